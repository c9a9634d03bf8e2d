import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Node } from 'constructs';
import { createTokenBrokerApp } from '../../infra/create-app';
import { cdkJsonContext } from './synth';

/** The keys of the README's context-key table (first column), between its `checked:context-keys` markers. */
function contextKeysTheReadmeLists(): string[] {
  const readme = readFileSync(join(__dirname, '..', '..', 'README.md'), 'utf8');
  const block = readme.split('<!-- checked:context-keys -->')[1]?.split('<!-- /checked:context-keys -->')[0];
  if (block === undefined) throw new Error('README has no <!-- checked:context-keys --> block');
  const keyCells = block
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .map((line) => line.split('|')[1] ?? '');
  return keyCells.flatMap((cell) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1] as string)).sort();
}

/** Every context key the app asks for while it is built (CDK's own keys, with `:` or `@`, left out). */
function contextKeysTheAppReads(): string[] {
  // A spy that calls through: it only records which keys are asked for.
  const spy = jest.spyOn(Node.prototype, 'tryGetContext');
  try {
    // No bundling: only the construction matters here.
    createTokenBrokerApp({ context: { ...cdkJsonContext(), 'aws:cdk:bundling-stacks': [] } });
    const keys = new Set(spy.mock.calls.map(([key]) => key));
    return [...keys].filter((key) => /^[A-Za-z]+$/.test(key)).sort();
  } finally {
    spy.mockRestore();
  }
}

describe('README context keys', () => {
  it('lists exactly the context keys the CDK app reads (infra/create-app.ts)', () => {
    expect(contextKeysTheReadmeLists()).toEqual(contextKeysTheAppReads());
  });
});
