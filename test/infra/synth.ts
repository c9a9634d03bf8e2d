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
  options: {
    outdir?: string;
    customize?: (stack: TokenBrokerStack) => void;
    bundle?: boolean;
    /** The account and region the CLI would take from its credentials (CDK_DEFAULT_ACCOUNT/REGION). */
    environment?: { account: string; region: string };
  } = {},
): SynthesizedBroker {
  const saved = { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION };
  if (options.environment) {
    process.env.CDK_DEFAULT_ACCOUNT = options.environment.account;
    process.env.CDK_DEFAULT_REGION = options.environment.region;
  }
  let built: ReturnType<typeof createTokenBrokerApp>;
  try {
    built = createTokenBrokerApp({
      outdir: options.outdir,
      context: { ...cdkJsonContext(), ...(options.bundle === false ? NO_BUNDLING : {}), ...context },
    });
  } finally {
    for (const [key, value] of [
      ['CDK_DEFAULT_ACCOUNT', saved.account],
      ['CDK_DEFAULT_REGION', saved.region],
    ] as const) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
  const { app, stack } = built;
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

/** Private subnets of the VPC {@link vpcLookupContext} describes, one per availability zone. */
export const LOOKED_UP_SUBNETS = [
  { subnetId: 'subnet-0a1b2c3d4e5f60001', routeTableId: 'rtb-0a1b2c3d4e5f60001', availabilityZone: 'a' },
  { subnetId: 'subnet-0a1b2c3d4e5f60002', routeTableId: 'rtb-0a1b2c3d4e5f60002', availabilityZone: 'b' },
];

/**
 * The context entry `cdk synth` caches in cdk.context.json after looking up `vpcId` (`-c vpcId=...`), so the VPC
 * variant synthesizes offline: a VPC with two private subnets (with egress) and a public one.
 */
export function vpcLookupContext(account: string, region: string, vpcId: string): Record<string, unknown> {
  const key = `vpc-provider:account=${account}:filter.vpc-id=${vpcId}:region=${region}:returnAsymmetricSubnets=true`;
  return {
    [key]: {
      vpcId,
      vpcCidrBlock: '10.0.0.0/16',
      ownerAccountId: account,
      availabilityZones: [],
      subnetGroups: [
        {
          name: 'Private',
          type: 'Private',
          subnets: LOOKED_UP_SUBNETS.map((s, i) => ({
            subnetId: s.subnetId,
            routeTableId: s.routeTableId,
            cidr: `10.0.${i + 1}.0/24`,
            availabilityZone: `${region}${s.availabilityZone}`,
          })),
        },
        {
          name: 'Public',
          type: 'Public',
          subnets: [
            {
              subnetId: 'subnet-0a1b2c3d4e5f60009',
              routeTableId: 'rtb-0a1b2c3d4e5f60009',
              cidr: '10.0.9.0/24',
              availabilityZone: `${region}a`,
            },
          ],
        },
      ],
    },
  };
}
