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
    this.broker = new TokenBroker(this, 'TokenBroker', {
      ...props.broker,
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
    new CfnOutput(this, 'SecretPrefix', {
      description: 'Secrets Manager name prefix of the service secrets',
      value: this.broker.secretPrefix,
    });
  }
}
