import {
  type AttributeValue,
  ConditionalCheckFailedException,
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
} from '@aws-sdk/client-dynamodb';
import { type CallOptions, sendOptions } from './call-options';
import { storeFailure } from './errors';
import { TOKEN_CACHE_TABLE } from './tables';
import { type CacheKey, cacheSortKey } from './token-cache';

/**
 * Cross-instance coordination for one cache key, kept in the token cache table beside the token item (same
 * partition, so clearing a service's tokens clears these too):
 * - a refresh lease, so that of many instances missing the same token at once exactly one asks Entra;
 * - a cool-down, so that after Entra refused a service, callers get the refusal without asking Entra again.
 */
export interface RefreshCoordinator {
  /** Tries to become the one refresher of `key` for `ttlMs`; false when another holder's lease is still live. */
  acquire(key: CacheKey, holder: string, ttlMs: number, options?: CallOptions): Promise<boolean>;
  /** Releases the lease if `holder` still holds it. */
  release(key: CacheKey, holder: string, options?: CallOptions): Promise<void>;
  /** Records that Entra refused `key` until `until` (epoch ms), with the caller-facing error. */
  coolDown(key: CacheKey, until: number, error: CooldownError, options?: CallOptions): Promise<void>;
  /** The live cool-down of `key`, if any. */
  coolingDown(key: CacheKey, options?: CallOptions): Promise<(CooldownError & { until: number }) | undefined>;
}

/** What is remembered of a refused token request: exactly what the caller was told. */
export interface CooldownError {
  message: string;
  context?: Record<string, unknown>;
}

export interface DynamoDbRefreshCoordinatorOptions {
  client: DynamoDBClient;
  tableName: string;
  now?: () => number;
}

/** RefreshCoordinator on the token cache table (conditional writes; no transactions). */
export class DynamoDbRefreshCoordinator implements RefreshCoordinator {
  private readonly client: DynamoDBClient;
  private readonly tableName: string;
  private readonly now: () => number;

  constructor(options: DynamoDbRefreshCoordinatorOptions) {
    this.client = options.client;
    this.tableName = options.tableName;
    this.now = options.now ?? Date.now;
  }

  private key(key: CacheKey, kind: 'lease' | 'cooldown'): Record<string, AttributeValue> {
    return {
      [TOKEN_CACHE_TABLE.partitionKey]: { S: key.service },
      [TOKEN_CACHE_TABLE.sortKey]: { S: `${kind}#${cacheSortKey(key)}` },
    };
  }

  async acquire(key: CacheKey, holder: string, ttlMs: number, options?: CallOptions): Promise<boolean> {
    const now = this.now();
    try {
      // Timeline: A takes the lease (expires t+ttl). B, arriving before t+ttl, fails the condition and waits for
      // A's token. If A crashes, C arriving after t+ttl finds the lease expired and takes it over.
      await this.client.send(
        new PutItemCommand({
          TableName: this.tableName,
          Item: {
            ...this.key(key, 'lease'),
            holder: { S: holder },
            lease_expires_at: { N: String(now + ttlMs) },
            [TOKEN_CACHE_TABLE.ttlAttribute]: { N: String(Math.ceil((now + ttlMs) / 1000) + 60) },
          },
          ConditionExpression: 'attribute_not_exists(#pk) OR #expires < :now',
          ExpressionAttributeNames: { '#pk': TOKEN_CACHE_TABLE.partitionKey, '#expires': 'lease_expires_at' },
          ExpressionAttributeValues: { ':now': { N: String(now) } },
        }),
        sendOptions(options),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw storeFailure('refresh lease write failed', error);
    }
  }

  async release(key: CacheKey, holder: string, options?: CallOptions): Promise<void> {
    try {
      await this.client.send(
        new DeleteItemCommand({
          TableName: this.tableName,
          Key: this.key(key, 'lease'),
          ConditionExpression: '#holder = :holder',
          ExpressionAttributeNames: { '#holder': 'holder' },
          ExpressionAttributeValues: { ':holder': { S: holder } },
        }),
        sendOptions(options),
      );
    } catch (error) {
      // Someone took over an expired lease: it is theirs now.
      if (error instanceof ConditionalCheckFailedException) return;
      throw storeFailure('refresh lease release failed', error);
    }
  }

  async coolDown(key: CacheKey, until: number, error: CooldownError, options?: CallOptions): Promise<void> {
    try {
      await this.client.send(
        new PutItemCommand({
          TableName: this.tableName,
          Item: {
            ...this.key(key, 'cooldown'),
            until: { N: String(until) },
            message: { S: error.message },
            context: { S: JSON.stringify(error.context ?? {}) },
            [TOKEN_CACHE_TABLE.ttlAttribute]: { N: String(Math.ceil(until / 1000) + 60) },
          },
        }),
        sendOptions(options),
      );
    } catch (cause) {
      throw storeFailure('cool-down write failed', cause);
    }
  }

  async coolingDown(
    key: CacheKey,
    options?: CallOptions,
  ): Promise<(CooldownError & { until: number }) | undefined> {
    let item: Record<string, AttributeValue> | undefined;
    try {
      const out = await this.client.send(
        new GetItemCommand({
          TableName: this.tableName,
          Key: this.key(key, 'cooldown'),
          ConsistentRead: true,
        }),
        sendOptions(options),
      );
      item = out.Item;
    } catch (cause) {
      throw storeFailure('cool-down read failed', cause);
    }
    const until = Number(item?.until?.N);
    if (!item || !(until > this.now())) return undefined;
    let context: Record<string, unknown> | undefined;
    try {
      context = JSON.parse(item.context?.S ?? '{}') as Record<string, unknown>;
    } catch {
      context = undefined;
    }
    return { until, message: item.message?.S ?? 'identity provider refused the request', context };
  }
}
