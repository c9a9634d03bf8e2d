import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { CloudAssembly } from 'aws-cdk-lib/cx-api';
import { createCheckedApp, createTokenBrokerApp } from '../../infra/create-app';
import { TokenBrokerStack } from '../../infra/stack';
import type { TokenBrokerProps } from '../../infra/token-broker';

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

/** CDK's context key listing the stacks whose assets are bundled; empty: none (the template stays the same). */
export const NO_BUNDLING = { 'aws:cdk:bundling-stacks': [] };

/**
 * Builds the app as infra/app.ts does (cdk-nag included: a finding makes this throw), with extra context on top
 * of cdk.json's, lets `customize` add to it, and synthesizes it once. Bundling runs the real esbuild, unless
 * `bundle: false` (for tests that read only the template: it saves most of the synthesis time).
 */
export function synthesizeBroker(
  context: Record<string, unknown> = {},
  options: { outdir?: string; customize?: (stack: TokenBrokerStack) => void; bundle?: boolean } = {},
): SynthesizedBroker {
  const { app, stack } = createTokenBrokerApp({
    outdir: options.outdir,
    context: { ...cdkJsonContext(), ...(options.bundle === false ? NO_BUNDLING : {}), ...context },
  });
  options.customize?.(stack);
  const assembly = app.synth();
  const template = Template.fromJSON(assembly.getStackByName(stack.stackName).template);
  return { app, stack, assembly, template };
}

/**
 * A stack of one broker built from its props directly (what context cannot express, such as declared services),
 * in an app with the same compliance checks as infra/app.ts, synthesized once.
 */
export function synthesizeBrokerProps(
  broker: TokenBrokerProps,
  options: { customize?: (stack: TokenBrokerStack) => void; bundle?: boolean } = {},
): SynthesizedBroker {
  const app = createCheckedApp({
    context: { ...cdkJsonContext(), ...(options.bundle === false ? NO_BUNDLING : {}) },
  });
  const stack = new TokenBrokerStack(app, 'TokenBroker-dev', { broker });
  options.customize?.(stack);
  const assembly = app.synth();
  const template = Template.fromJSON(assembly.getStackByName(stack.stackName).template);
  return { app, stack, assembly, template };
}
