import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { CloudAssembly } from 'aws-cdk-lib/cx-api';
import { createTokenBrokerApp } from '../../infra/create-app';
import type { TokenBrokerStack } from '../../infra/stack';

/** The context of cdk.json (feature flags included), so tests synthesize exactly what `cdk synth` does. */
export function cdkJsonContext(): Record<string, unknown> {
  const cdkJson = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'cdk.json'), 'utf8')) as {
    context: Record<string, unknown>;
  };
  return cdkJson.context;
}

export interface SynthesizedBroker {
  app: App;
  stack: TokenBrokerStack;
  assembly: CloudAssembly;
  template: Template;
}

/**
 * Builds the app as infra/app.ts does (cdk-nag included: a finding makes this throw), with extra context on top
 * of cdk.json's, lets `customize` add to it, and synthesizes it once. Bundling runs the real esbuild.
 */
export function synthesizeBroker(
  context: Record<string, unknown> = {},
  options: { outdir?: string; customize?: (stack: TokenBrokerStack) => void } = {},
): SynthesizedBroker {
  const { app, stack } = createTokenBrokerApp({
    outdir: options.outdir,
    context: { ...cdkJsonContext(), ...context },
  });
  options.customize?.(stack);
  const assembly = app.synth();
  const template = Template.fromJSON(assembly.getStackByName(stack.stackName).template);
  return { app, stack, assembly, template };
}
