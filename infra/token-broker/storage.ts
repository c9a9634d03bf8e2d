import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as kms from 'aws-cdk-lib/aws-kms';
import type { Construct } from 'constructs';
import { SERVICES_TABLE, TOKEN_CACHE_TABLE } from '../../lib/tables';
import type { ResolvedBrokerProps } from './props';

/** The broker's state: the services table, the token cache table and the key that encrypts both (and the secrets). */
export interface BrokerStorage {
  readonly key: kms.Key;
  readonly servicesTable: dynamodb.Table;
  readonly tokenCacheTable: dynamodb.Table;
}

/**
 * Creates the key and the tables in `scope` (the broker construct itself, so their construct paths, and with them
 * their logical ids, are those of the first release: see test/infra/logical-ids.test.ts).
 */
export function createStorage(scope: Construct, props: ResolvedBrokerProps): BrokerStorage {
  const { removalPolicy } = props;
  const key = new kms.Key(scope, 'Key', {
    description: `Token Broker (${props.stage}): DynamoDB tables and service secrets`,
    alias: `alias/${props.namePrefix}`,
    enableKeyRotation: true,
    removalPolicy,
    pendingWindow: Duration.days(7),
  });

  const servicesTable = new dynamodb.Table(scope, 'ServicesTable', {
    partitionKey: { name: SERVICES_TABLE.partitionKey, type: dynamodb.AttributeType.STRING },
    billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
    encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
    encryptionKey: key,
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    deletionProtection: removalPolicy === RemovalPolicy.RETAIN,
    removalPolicy,
  });

  const tokenCacheTable = new dynamodb.Table(scope, 'TokenCacheTable', {
    partitionKey: { name: TOKEN_CACHE_TABLE.partitionKey, type: dynamodb.AttributeType.STRING },
    sortKey: { name: TOKEN_CACHE_TABLE.sortKey, type: dynamodb.AttributeType.STRING },
    timeToLiveAttribute: TOKEN_CACHE_TABLE.ttlAttribute,
    billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
    encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
    encryptionKey: key,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  Validations.of(tokenCacheTable).acknowledge({
    id: 'AwsSolutions-DDB3',
    reason:
      'The token cache holds only access tokens that Entra issues again on a miss; point-in-time recovery would ' +
      'restore nothing of value and would keep copies of live tokens for 35 days.',
  });

  return { key, servicesTable, tokenCacheTable };
}
