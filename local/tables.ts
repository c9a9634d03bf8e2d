import {
  CreateTableCommand,
  DescribeTableCommand,
  type DynamoDBClient,
  ResourceInUseException,
  ResourceNotFoundException,
  UpdateTimeToLiveCommand,
} from '@aws-sdk/client-dynamodb';
import { SERVICES_TABLE, TOKEN_CACHE_TABLE, USER_GRANTS_TABLE } from '../lib/tables';

/** Table names for one broker. */
export interface TableNames {
  servicesTable: string;
  tokenCacheTable: string;
  /** The authorization code flow's grants and consent states; created only when named. */
  userGrantsTable?: string;
}

async function exists(client: DynamoDBClient, name: string): Promise<boolean> {
  try {
    await client.send(new DescribeTableCommand({ TableName: name }));
    return true;
  } catch (error) {
    if (error instanceof ResourceNotFoundException) return false;
    throw error;
  }
}

async function create(client: DynamoDBClient, input: ConstructorParameters<typeof CreateTableCommand>[0]) {
  try {
    await client.send(new CreateTableCommand(input));
  } catch (error) {
    // Another broker process sharing the endpoint created it first.
    if (!(error instanceof ResourceInUseException)) throw error;
  }
}

/**
 * Creates the broker's tables on a local DynamoDB endpoint when they are missing, with the same key schema as
 * the CDK stack (both come from lib/tables.ts). TTL is enabled where the engine supports it (DynamoDB Local
 * does; dynalite does not, and the broker never relies on TTL deletion for correctness).
 */
export async function ensureTables(client: DynamoDBClient, names: TableNames): Promise<void> {
  if (!(await exists(client, names.servicesTable))) {
    await create(client, {
      TableName: names.servicesTable,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [{ AttributeName: SERVICES_TABLE.partitionKey, AttributeType: 'S' }],
      KeySchema: [{ AttributeName: SERVICES_TABLE.partitionKey, KeyType: 'HASH' }],
    });
  }
  if (!(await exists(client, names.tokenCacheTable))) {
    await create(client, {
      TableName: names.tokenCacheTable,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [
        { AttributeName: TOKEN_CACHE_TABLE.partitionKey, AttributeType: 'S' },
        { AttributeName: TOKEN_CACHE_TABLE.sortKey, AttributeType: 'S' },
      ],
      KeySchema: [
        { AttributeName: TOKEN_CACHE_TABLE.partitionKey, KeyType: 'HASH' },
        { AttributeName: TOKEN_CACHE_TABLE.sortKey, KeyType: 'RANGE' },
      ],
    });
    try {
      await client.send(
        new UpdateTimeToLiveCommand({
          TableName: names.tokenCacheTable,
          TimeToLiveSpecification: { AttributeName: TOKEN_CACHE_TABLE.ttlAttribute, Enabled: true },
        }),
      );
    } catch {
      // Engines without TTL support (dynalite): expired items are ignored on read anyway.
    }
  }
  if (names.userGrantsTable !== undefined && !(await exists(client, names.userGrantsTable))) {
    await create(client, {
      TableName: names.userGrantsTable,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [
        { AttributeName: USER_GRANTS_TABLE.partitionKey, AttributeType: 'S' },
        { AttributeName: USER_GRANTS_TABLE.sortKey, AttributeType: 'S' },
      ],
      KeySchema: [
        { AttributeName: USER_GRANTS_TABLE.partitionKey, KeyType: 'HASH' },
        { AttributeName: USER_GRANTS_TABLE.sortKey, KeyType: 'RANGE' },
      ],
    });
    try {
      await client.send(
        new UpdateTimeToLiveCommand({
          TableName: names.userGrantsTable,
          TimeToLiveSpecification: { AttributeName: USER_GRANTS_TABLE.ttlAttribute, Enabled: true },
        }),
      );
    } catch {
      // Engines without TTL support: expired states are refused on read anyway.
    }
  }
  // dynalite creates tables asynchronously; wait until all are ACTIVE.
  const all = [names.servicesTable, names.tokenCacheTable, names.userGrantsTable];
  for (const name of all.filter((n): n is string => n !== undefined)) {
    for (let i = 0; i < 100; i++) {
      const out = await client.send(new DescribeTableCommand({ TableName: name }));
      if (out.Table?.TableStatus === 'ACTIVE') break;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
