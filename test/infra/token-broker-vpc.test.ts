/**
 * The functions in a VPC (`-c vpcId=... -c httpsProxy=...`): private subnets, endpoints for the AWS services they
 * call, Entra through a proxy. The VPC is looked up from cached context, as `cdk synth` does after its first lookup;
 * the account and region are the CLI's. Templates only (no bundling); cdk-nag and the guard rules run.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { createCheckedApp } from '../../infra/create-app';
import { TokenBrokerStack } from '../../infra/stack';
import {
  cdkJsonContext,
  LOOKED_UP_SUBNETS,
  NO_BUNDLING,
  type SynthesizedBroker,
  synthesizeBroker,
  vpcLookupContext,
} from './synth';
import {
  asArray,
  type CfnResourceJson,
  functionRoleId,
  guardReport,
  logicalIdOf,
  resourcesOfType,
  roleStatements,
} from './template';

const ACCOUNT = '123456789012';
const REGION = 'eu-west-1';
const VPC_ID = 'vpc-0123456789abcdef0';
const PROXY = 'http://proxy.example.internal:3128';
const PRIVATE_SUBNETS = LOOKED_UP_SUBNETS.map((s) => s.subnetId);

const synthesizeInVpc = (context: Record<string, unknown> = {}): SynthesizedBroker =>
  synthesizeBroker(
    { vpcId: VPC_ID, httpsProxy: PROXY, ...vpcLookupContext(ACCOUNT, REGION, VPC_ID), ...context },
    { bundle: false, environment: { account: ACCOUNT, region: REGION } },
  );

let synthesized: SynthesizedBroker;
let stack: TokenBrokerStack;
let template: Template;

beforeAll(() => {
  synthesized = synthesizeInVpc();
  stack = synthesized.stack;
  template = synthesized.template;
});

const functions = () => Object.entries(resourcesOfType(template, 'AWS::Lambda::Function'));
const endpoints = () =>
  Object.values(resourcesOfType(template, 'AWS::EC2::VPCEndpoint')).map((e) => e.Properties);

describe('functions in a VPC', () => {
  it("runs every function in the VPC's private subnets, in the security group the broker creates", () => {
    const groups = resourcesOfType(template, 'AWS::EC2::SecurityGroup');
    const functionsGroup = Object.entries(groups).find(([, g]) =>
      String(g.Properties.GroupDescription).startsWith('Token Broker dev: functions'),
    )?.[0];

    // token, admin, delegated, refresh
    expect(functions()).toHaveLength(4);
    for (const [, fn] of functions()) {
      expect(fn.Properties.VpcConfig).toEqual({
        SubnetIds: PRIVATE_SUBNETS,
        SecurityGroupIds: [{ 'Fn::GetAtt': [functionsGroup, 'GroupId'] }],
      });
    }
  });

  it('gives the functions HTTPS_PROXY for Entra', () => {
    for (const [, fn] of functions()) {
      expect(
        (fn.Properties.Environment as { Variables: Record<string, unknown> }).Variables.HTTPS_PROXY,
      ).toBe(PROXY);
    }
  });

  it("reaches DynamoDB through a gateway endpoint in the subnets' route tables", () => {
    expect(endpoints().filter((e) => e.VpcEndpointType === 'Gateway')).toEqual([
      expect.objectContaining({
        VpcId: VPC_ID,
        RouteTableIds: LOOKED_UP_SUBNETS.map((s) => s.routeTableId),
        ServiceName: { 'Fn::Join': ['', ['com.amazonaws.', { Ref: 'AWS::Region' }, '.dynamodb']] },
      }),
    ]);
  });

  it('reaches Secrets Manager and KMS through interface endpoints with private DNS in the same subnets', () => {
    const interfaces = endpoints().filter((e) => e.VpcEndpointType === 'Interface');

    expect(interfaces.map((e) => e.ServiceName).sort()).toEqual([
      `com.amazonaws.${REGION}.kms`,
      `com.amazonaws.${REGION}.secretsmanager`,
    ]);
    for (const e of interfaces)
      expect(e).toMatchObject({ PrivateDnsEnabled: true, SubnetIds: PRIVATE_SUBNETS });
  });

  it("opens the interface endpoints on 443 to the functions' security group and nothing else", () => {
    const groups = resourcesOfType(template, 'AWS::EC2::SecurityGroup');
    const [endpointGroupId, endpointGroup] = Object.entries(groups).find(([, g]) =>
      String(g.Properties.GroupDescription).includes('Secrets Manager and KMS endpoints'),
    ) as [string, CfnResourceJson];
    const functionsGroupId = Object.keys(groups).find((id) => id !== endpointGroupId);
    const ingress = Object.values(resourcesOfType(template, 'AWS::EC2::SecurityGroupIngress')).map(
      (r) => r.Properties,
    );

    expect(endpointGroup.Properties.SecurityGroupIngress).toBeUndefined();
    expect(ingress).toEqual([
      expect.objectContaining({
        GroupId: { 'Fn::GetAtt': [endpointGroupId, 'GroupId'] },
        SourceSecurityGroupId: { 'Fn::GetAtt': [functionsGroupId, 'GroupId'] },
        IpProtocol: 'tcp',
        FromPort: 443,
        ToPort: 443,
      }),
    ]);
  });

  it('gives each function the network interface actions Lambda needs in a VPC, on its own role', () => {
    const id = logicalIdOf(stack, stack.broker.tokenFunction);
    const eni = roleStatements(template, functionRoleId(template, id)).filter((s) =>
      asArray(s.Action).includes('ec2:CreateNetworkInterface'),
    );

    expect(eni).toHaveLength(1);
    expect(eni[0]?.Resource).toBe('*');
    expect(
      asArray(eni[0]?.Action)
        .filter((a) => a.startsWith('ec2:'))
        .sort(),
    ).toEqual([
      'ec2:AssignPrivateIpAddresses',
      'ec2:CreateNetworkInterface',
      'ec2:DeleteNetworkInterface',
      'ec2:DescribeNetworkInterfaces',
      'ec2:DescribeSubnets',
      'ec2:UnassignPrivateIpAddresses',
    ]);
  });

  it('passes the guard rules with the token cache PITR as the only acknowledged exception', () => {
    const report = guardReport(synthesized.assembly.directory);

    expect(report.violations).toEqual([]);
    // A stack with an account names it literally in SourceAccount, which the rule reads.
    expect(Object.keys(report.acknowledged)).toEqual(['dynamodb_table_pitr_enabled_check']);
  });
});

describe('functions in a VPC that already has its endpoints, with security groups of the platform team', () => {
  it('creates no endpoint and no security group, and uses the given groups and subnets', () => {
    const { template: shared } = synthesizeInVpc({
      createVpcEndpoints: 'false',
      securityGroupIds: 'sg-0123456789abcdef0',
      vpcSubnetIds: PRIVATE_SUBNETS[0],
    });

    expect(Object.keys(resourcesOfType(shared, 'AWS::EC2::VPCEndpoint'))).toEqual([]);
    expect(Object.keys(resourcesOfType(shared, 'AWS::EC2::SecurityGroup'))).toEqual([]);
    for (const fn of Object.values(resourcesOfType(shared, 'AWS::Lambda::Function'))) {
      expect(fn.Properties.VpcConfig).toEqual({
        SubnetIds: [PRIVATE_SUBNETS[0]],
        SecurityGroupIds: ['sg-0123456789abcdef0'],
      });
    }
  });
});

describe('a VPC without the account and region to look it up in', () => {
  it('is refused with what to do', () => {
    expect(() => synthesizeBroker({ vpcId: VPC_ID }, { bundle: false })).toThrow(
      /"vpcId" is looked up in the stack's account and region/,
    );
  });
});

describe("a construct user's VPC from another stack, with services declared in code", () => {
  it('puts the declaring function and its provider in the VPC too, and the broker stack passes the checks', () => {
    const outdir = mkdtempSync(path.join(tmpdir(), 'token-broker-vpc-'));
    const app = createCheckedApp({ outdir, context: { ...cdkJsonContext(), ...NO_BUNDLING } });
    const vpc = new ec2.Vpc(new Stack(app, 'Network'), 'Vpc', { maxAzs: 2 });
    const broker = new TokenBrokerStack(app, 'TokenBroker-dev', {
      broker: {
        vpc,
        services: [
          {
            name: 'graph',
            clientId: '11111111-1111-4111-8111-111111111111',
            tenantId: 'contoso.onmicrosoft.com',
            clientSecretArn: `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:token-broker/dev/services/graph-AbCdEf`,
          },
        ],
      },
    });

    // The network stack is the construct user's: its own findings (flow logs, ...) are theirs to settle.
    expect(() => app.synth()).toThrow();
    const findings = JSON.parse(readFileSync(path.join(outdir, 'validation-report.json'), 'utf8')) as {
      pluginReports: Array<{ violations: Array<{ violatingConstructs: Array<{ constructPath: string }> }> }>;
    };
    const inBroker = findings.pluginReports
      .flatMap((r) => r.violations)
      .flatMap((v) => v.violatingConstructs)
      .filter((c) => c.constructPath.startsWith(`${broker.stackName}/`));
    const functionsInVpc = Object.values(
      Template.fromJSON(
        JSON.parse(readFileSync(path.join(outdir, `${broker.stackName}.template.json`), 'utf8')),
      ).findResources('AWS::Lambda::Function'),
    ).filter((f) => (f as CfnResourceJson).Properties.VpcConfig !== undefined);

    expect(inBroker).toEqual([]);
    expect(functionsInVpc).toHaveLength(6);
  });
});
