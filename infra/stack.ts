import { CfnOutput, Stack, type StackProps, Tags } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as sns from 'aws-cdk-lib/aws-sns';
import type { Construct } from 'constructs';
import { TokenBroker, type TokenBrokerProps } from './token-broker';

export interface TokenBrokerStackProps extends StackProps {
  /** Properties of the broker; see {@link TokenBrokerProps}. */
  readonly broker?: TokenBrokerProps;
  /** Existing execute-api interface VPC endpoints (`vpce-...`) of a PRIVATE API, imported by id. */
  readonly vpcEndpointIds?: string[];
  /** ARN of an existing SNS topic for alarm notifications. */
  readonly alarmTopicArn?: string;
  /**
   * An existing VPC (`vpc-...`) to run the functions in, looked up at synth (`cdk synth` with credentials for the
   * stack's account and region, cached in cdk.context.json).
   */
  readonly vpcId?: string;
  /** Subnets of `vpcId` for the functions and endpoints. @default - the VPC's private subnets with egress */
  readonly vpcSubnetIds?: string[];
  /** Existing security groups (`sg-...`) for the functions. @default - one the broker creates */
  readonly securityGroupIds?: string[];
}

/** A stack holding one {@link TokenBroker}, with the outputs an operator needs after `cdk deploy`. */
export class TokenBrokerStack extends Stack {
  readonly broker: TokenBroker;

  constructor(scope: Construct, id: string, props: TokenBrokerStackProps = {}) {
    super(scope, id, props);
    const vpcEndpoints = (props.vpcEndpointIds ?? []).map((vpcEndpointId) =>
      ec2.InterfaceVpcEndpoint.fromInterfaceVpcEndpointAttributes(this, `VpcEndpoint-${vpcEndpointId}`, {
        vpcEndpointId,
        port: 443,
      }),
    );
    const vpc =
      props.vpcId === undefined ? undefined : ec2.Vpc.fromLookup(this, 'Vpc', { vpcId: props.vpcId });
    this.broker = new TokenBroker(this, 'TokenBroker', {
      ...props.broker,
      ...(vpc ? { vpc } : {}),
      ...(props.vpcSubnetIds !== undefined
        ? { vpcSubnets: { subnetFilters: [ec2.SubnetFilter.byIds(props.vpcSubnetIds)] } }
        : {}),
      ...(props.securityGroupIds !== undefined
        ? {
            securityGroups: props.securityGroupIds.map((id) =>
              ec2.SecurityGroup.fromSecurityGroupId(this, `SecurityGroup-${id}`, id),
            ),
          }
        : {}),
      ...(vpcEndpoints.length > 0
        ? { vpcEndpoints: [...(props.broker?.vpcEndpoints ?? []), ...vpcEndpoints] }
        : {}),
      ...(props.alarmTopicArn !== undefined
        ? { alarmTopic: sns.Topic.fromTopicArn(this, 'AlarmTopic', props.alarmTopicArn) }
        : {}),
    });
    Tags.of(this).add('token-broker:stage', this.broker.stage);

    new CfnOutput(this, 'ApiUrl', {
      description: 'Base URL of the API stage; routes are under api/v2/',
      value: this.broker.url,
    });
    new CfnOutput(this, 'ServicesTableName', {
      description: 'DynamoDB table of service configurations',
      value: this.broker.servicesTable.tableName,
    });
    new CfnOutput(this, 'TokenCacheTableName', {
      description: 'DynamoDB table of cached tokens',
      value: this.broker.tokenCacheTable.tableName,
    });
    new CfnOutput(this, 'KmsKeyArn', {
      description: 'KMS key encrypting the tables and the service secrets',
      value: this.broker.key.keyArn,
    });
    new CfnOutput(this, 'AlarmTopicArn', {
      description:
        'SNS topic of the alarms: subscribe to it (aws sns subscribe --topic-arn ... --protocol email ...)',
      value: this.broker.alarmTopic.topicArn,
    });
    if (this.broker.federationSubject !== undefined) {
      new CfnOutput(this, 'FederationSubject', {
        description:
          'Subject of the federated credential on each app registration (the role the token functions share)',
        value: this.broker.federationSubject,
      });
    }
    new CfnOutput(this, 'SecretPrefix', {
      description: 'Secrets Manager name prefix of the service secrets',
      value: this.broker.secretPrefix,
    });
  }
}
