import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import type { CallOptions } from './call-options';
import { type DynamoDbOperations, isConditionalCheckFailure } from './dynamodb';
import { storeFailure } from './errors';
import { TOKEN_CACHE_TABLE } from './tables';
import type { CacheKey } from './token-cache';

/**
 * Cross-instance coordination for one cache key, kept in the token cache table beside the token item (same
 * partition, sort keys under `coord#<version>#`, which clearing a service's tokens leaves alone):
 * - a refresh lease, so that of many instances missing the same token at once exactly one asks Entra, and the
 *   others can see whether it is still at work;
 * - a cool-down, so that after Entra refused a service, callers get the refusal without asking Entra again;
 * - a throttle, so that after Entra asked for a pause longer than a request can wait (Retry-After), no instance
 *   asks Entra for the service before the pause ends.
 */
export interface RefreshCoordinator {
  /** Tries to become the one refresher of `key` for `ttlMs`; false when another holder's lease is still live. */
  acquire(key: CacheKey, holder: string, ttlMs: number, options?: CallOptions): Promise<boolean>;
  /** Releases the lease if `holder` still holds it. */
  release(key: CacheKey, holder: string, options?: CallOptions): Promise<void>;
  /** Records that Entra refused `key` until `until` (epoch ms), with the caller-facing error. */
  coolDown(key: CacheKey, until: number, error: CooldownError, options?: CallOptions): Promise<void>;
  /** Records that Entra asked not to be asked for the key's service version before `until` (epoch ms). */
  throttle(key: CacheKey, until: number, options?: CallOptions): Promise<void>;
  /** The live lease, cool-down and throttle of `key`, in one strongly consistent read. */
  state(key: CacheKey, options?: CallOptions): Promise<CoordinationState>;
}

/** What is remembered of a refused token request: exactly what the caller was told. */
export interface CooldownError {
  message: string;
  context?: Record<string, unknown>;
}

/** What the instances share about one key right now; absent parts are not live. */
export interface CoordinationState {
  lease?: { holder: string; expiresAt: number };
  cooldown?: CooldownError & { until: number };
  /** Epoch ms before which Entra must not be asked. */
  throttledUntil?: number;
}

export interface DynamoDbRefreshCoordinatorOptions {
  client: DynamoDbOperations;
  tableName: string;
  now?: () => number;
}

/** The sort-key prefix of every coordination item of a service version. */
export const coordinationPrefix = (version: string): string => `coord#${version}#`;

type Kind = 'lease' | 'cooldown' | 'throttled';

/** RefreshCoordinator on the token cache table (conditional writes; no transactions). */
export class DynamoDbRefreshCoordinator implements RefreshCoordinator {
  private readonly client: DynamoDbOperations;
  private readonly tableName: string;
  private readonly now: () => number;

  constructor(options: DynamoDbRefreshCoordinatorOptions) {
    this.client = options.client;
    this.tableName = options.tableName;
    this.now = options.now ?? Date.now;
  }

  /** The sort key of a coordination item; the throttle is per service version, the others per scope. */
  private sortKey(key: CacheKey, kind: Kind): string {
    return `${coordinationPrefix(key.version)}${kind}${kind === 'throttled' ? '' : `#${key.scope}`}`;
  }

  private key(key: CacheKey, kind: Kind): Record<string, AttributeValue> {
    return {
      [TOKEN_CACHE_TABLE.partitionKey]: { S: key.service },
      [TOKEN_CACHE_TABLE.sortKey]: { S: this.sortKey(key, kind) },
    };
  }

  /** DynamoDB may delete the item a minute after it stops mattering (reads check times themselves). */
  private ttl(untilMs: number): AttributeValue {
    return { N: String(Math.ceil(untilMs / 1000) + 60) };
  }

  async acquire(key: CacheKey, holder: string, ttlMs: number, options?: CallOptions): Promise<boolean> {
    const now = this.now();
    try {
      // Timeline: A takes the lease (expires t+ttl). B, arriving before t+ttl, fails the condition and waits for
      // A's token. If A crashes, C arriving after t+ttl finds the lease expired and takes it over.
      await this.client.putItem(
        {
          TableName: this.tableName,
          Item: {
            ...this.key(key, 'lease'),
            holder: { S: holder },
            lease_expires_at: { N: String(now + ttlMs) },
            [TOKEN_CACHE_TABLE.ttlAttribute]: this.ttl(now + ttlMs),
          },
          ConditionExpression: 'attribute_not_exists(#pk) OR #expires < :now',
          ExpressionAttributeNames: { '#pk': TOKEN_CACHE_TABLE.partitionKey, '#expires': 'lease_expires_at' },
          ExpressionAttributeValues: { ':now': { N: String(now) } },
        },
        options,
      );
      return true;
    } catch (error) {
      if (isConditionalCheckFailure(error)) return false;
      throw storeFailure('refresh lease write failed', error);
    }
  }

  async release(key: CacheKey, holder: string, options?: CallOptions): Promise<void> {
    try {
      await this.client.deleteItem(
        {
          TableName: this.tableName,
          Key: this.key(key, 'lease'),
          ConditionExpression: '#holder = :holder',
          ExpressionAttributeNames: { '#holder': 'holder' },
          ExpressionAttributeValues: { ':holder': { S: holder } },
        },
        options,
      );
    } catch (error) {
      // Someone took over an expired lease: it is theirs now.
      if (isConditionalCheckFailure(error)) return;
      throw storeFailure('refresh lease release failed', error);
    }
  }

  async coolDown(key: CacheKey, until: number, error: CooldownError, options?: CallOptions): Promise<void> {
    await this.put('cool-down', options, {
      ...this.key(key, 'cooldown'),
      until: { N: String(until) },
      message: { S: error.message },
      context: { S: JSON.stringify(error.context ?? {}) },
      [TOKEN_CACHE_TABLE.ttlAttribute]: this.ttl(until),
    });
  }

  async throttle(key: CacheKey, until: number, options?: CallOptions): Promise<void> {
    await this.put('throttle', options, {
      ...this.key(key, 'throttled'),
      until: { N: String(until) },
      [TOKEN_CACHE_TABLE.ttlAttribute]: this.ttl(until),
    });
  }

  private async put(what: string, options: CallOptions | undefined, item: Record<string, AttributeValue>) {
    try {
      await this.client.putItem({ TableName: this.tableName, Item: item }, options);
    } catch (cause) {
      throw storeFailure(`${what} write failed`, cause);
    }
  }

  async state(key: CacheKey, options?: CallOptions): Promise<CoordinationState> {
    const items: Record<string, AttributeValue>[] = [];
    try {
      let startKey: Record<string, AttributeValue> | undefined;
      do {
        const out = await this.client.query(
          {
            TableName: this.tableName,
            KeyConditionExpression: '#pk = :service AND begins_with(#sk, :prefix)',
            ExpressionAttributeNames: {
              '#pk': TOKEN_CACHE_TABLE.partitionKey,
              '#sk': TOKEN_CACHE_TABLE.sortKey,
            },
            ExpressionAttributeValues: {
              ':service': { S: key.service },
              ':prefix': { S: coordinationPrefix(key.version) },
            },
            ConsistentRead: true,
            ExclusiveStartKey: startKey,
          },
          options,
        );
        items.push(...(out.Items ?? []));
        startKey = out.LastEvaluatedKey;
      } while (startKey);
    } catch (cause) {
      throw storeFailure('coordination read failed', cause);
    }
    const now = this.now();
    const bySortKey = new Map(items.map((item) => [item[TOKEN_CACHE_TABLE.sortKey]?.S, item]));
    const state: CoordinationState = {};
    const lease = bySortKey.get(this.sortKey(key, 'lease'));
    const leaseExpiresAt = Number(lease?.lease_expires_at?.N);
    if (lease?.holder?.S && leaseExpiresAt >= now) {
      state.lease = { holder: lease.holder.S, expiresAt: leaseExpiresAt };
    }
    const cooldown = bySortKey.get(this.sortKey(key, 'cooldown'));
    const cooldownUntil = Number(cooldown?.until?.N);
    if (cooldown && cooldownUntil > now) {
      state.cooldown = {
        until: cooldownUntil,
        message: cooldown.message?.S ?? 'identity provider refused the request',
        context: parseContext(cooldown.context?.S),
      };
    }
    const throttledUntil = Number(bySortKey.get(this.sortKey(key, 'throttled'))?.until?.N);
    if (throttledUntil > now) state.throttledUntil = throttledUntil;
    return state;
  }
}

function parseContext(text: string | undefined): Record<string, unknown> | undefined {
  try {
    return JSON.parse(text ?? '{}') as Record<string, unknown>;
  } catch {
    return undefined;
  }
}
