import { Stack, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type { Construct } from 'constructs';
import type { ResolvedBrokerProps } from './props';

/** Where the functions run when the broker is given a VPC. */
export interface BrokerNetwork {
  readonly vpc: ec2.IVpc;
  readonly vpcSubnets: ec2.SubnetSelection;
  readonly securityGroups: ec2.ISecurityGroup[];
}

/**
 * The functions' network in `props.vpc`, or undefined without one: their security groups and, unless turned off,
 * the endpoints that keep AWS traffic inside the VPC (DynamoDB through a gateway endpoint in the subnets' route
 * tables; Secrets Manager and KMS, and STS with `federation`, through interface endpoints with private DNS,
 * reachable on 443 from the functions only). Entra is not an AWS service: the subnets need a NAT gateway or `httpsProxy` for it.
 */
export function createNetwork(scope: Construct, props: ResolvedBrokerProps): BrokerNetwork | undefined {
  const { vpc } = props;
  if (vpc === undefined) return undefined;
  const vpcSubnets = props.vpcSubnets ?? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS };
  const securityGroups = props.securityGroups ?? [
    new ec2.SecurityGroup(scope, 'FunctionsSecurityGroup', {
      vpc,
      description: `Token Broker ${props.stage}: functions (outbound: AWS endpoints, Entra through NAT or proxy)`,
      allowAllOutbound: true,
    }),
  ];
  if (props.createVpcEndpoints ?? true) {
    new ec2.GatewayVpcEndpoint(scope, 'DynamoDbEndpoint', {
      vpc,
      service: ec2.GatewayVpcEndpointAwsService.DYNAMODB,
      subnets: [vpcSubnets],
    });
    const endpointsSecurityGroup = new ec2.SecurityGroup(scope, 'VpcEndpointsSecurityGroup', {
      vpc,
      description: `Token Broker ${props.stage}: Secrets Manager and KMS endpoints (HTTPS from the functions)`,
      allowAllOutbound: false,
    });
    for (const group of securityGroups) {
      endpointsSecurityGroup.addIngressRule(group, ec2.Port.tcp(443), 'HTTPS from the broker functions');
    }
    const interfaceEndpoints: Array<[string, ec2.InterfaceVpcEndpointAwsService]> = [
      ['SecretsManagerEndpoint', ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER],
      ['KmsEndpoint', ec2.InterfaceVpcEndpointAwsService.KMS],
    ];
    // Federated credentials: GetWebIdentityToken is served by the regional STS endpoints only (not the global one),
    // which is where SDK v3 sends STS calls by default; with private DNS that regional name resolves to this endpoint.
    if (props.federation) interfaceEndpoints.push(['StsEndpoint', ec2.InterfaceVpcEndpointAwsService.STS]);
    for (const [id, service] of interfaceEndpoints) {
      new ec2.InterfaceVpcEndpoint(scope, id, {
        vpc,
        service,
        subnets: vpcSubnets,
        securityGroups: [endpointsSecurityGroup],
        open: false,
        privateDnsEnabled: true,
      });
    }
  }
  return { vpc, vpcSubnets, securityGroups };
}

/**
 * What Lambda needs on a function's own role to attach it to the VPC (the actions of the AWS managed policy
 * AWSLambdaVPCAccessExecutionRole, which the functions' own roles do not get).
 */
export function grantVpcAccess(role: iam.Role): void {
  role.addToPolicy(
    new iam.PolicyStatement({
      actions: [
        'ec2:CreateNetworkInterface',
        'ec2:DescribeNetworkInterfaces',
        'ec2:DescribeSubnets',
        'ec2:DeleteNetworkInterface',
        'ec2:AssignPrivateIpAddresses',
        'ec2:UnassignPrivateIpAddresses',
      ],
      resources: ['*'],
    }),
  );
}

/** Acknowledges Control Tower's "Lambda in a VPC" rule for a function the broker runs outside any VPC. */
export function acknowledgeNoVpc(fn: Construct): void {
  Validations.of(fn).acknowledge({
    id: 'cdk-validator-cfnguard::lambda_inside_vpc_check',
    reason:
      'No vpc prop was given: the function runs in Lambda-managed networking, which reaches DynamoDB, Secrets ' +
      'Manager, KMS and Entra over TLS with IAM-signed or client-authenticated requests and accepts no inbound ' +
      'connections. Give the vpc prop to run it in private subnets with VPC endpoints instead.',
  });
}

/**
 * Acknowledges Control Tower's "Lambda in a VPC" rule for a function that is in the given VPC, when that VPC (or a
 * given security group) belongs to another stack: its VpcConfig then names subnets and groups through cross-stack
 * references, which the synth-time rule cannot read. It accepts literal ids (a looked-up VPC) and references to
 * resources of the same stack.
 */
export function acknowledgeCrossStackNetwork(fn: Construct, network: BrokerNetwork): void {
  const stack = Stack.of(fn);
  const elsewhere = [network.vpc, ...network.securityGroups].some((c) => Stack.of(c) !== stack);
  if (!elsewhere) return;
  Validations.of(fn).acknowledge({
    id: 'cdk-validator-cfnguard::lambda_inside_vpc_check',
    reason:
      "The function runs in the VPC given as the vpc prop: its VpcConfig names that VPC's subnets and the " +
      'security groups, defined in another stack and so written as cross-stack references (Fn::ImportValue) that ' +
      "the synth-time rule cannot read. Control Tower's deploy-time hook sees the resolved ids.",
  });
}
