import {
  CreateTableCommand,
  DescribeTableCommand,
  type DynamoDBClient,
  ResourceInUseException,
  ResourceNotFoundException,
  UpdateTimeToLiveCommand,
} from '@aws-sdk/client-dynamodb';
import { SERVICES_TABLE, TOKEN_CACHE_TABLE } from '../lib/tables';

/** Table names for one broker. */
export interface TableNames {
  servicesTable: string;
  tokenCacheTable: string;
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
  // dynalite creates tables asynchronously; wait until both are ACTIVE.
  for (const name of [names.servicesTable, names.tokenCacheTable]) {
    for (let i = 0; i < 100; i++) {
      const out = await client.send(new DescribeTableCommand({ TableName: name }));
      if (out.Table?.TableStatus === 'ACTIVE') break;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
