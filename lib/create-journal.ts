import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import type { CallOptions } from './call-options';
import type { DynamoDbOperations } from './dynamodb';
import { storeFailure } from './errors';
import { SERVICES_TABLE } from './tables';

/** One service a create is about to write: everything needed to remove it again, known before any write. */
export interface PlannedService {
  name: string;
  version: string;
  /** True when the create makes a managed secret for it (`<prefix><name>/<version>`); false for a brought one. */
  managedSecret: boolean;
  /** A KMS key the create made for it (kms_certificate), noted right after CreateKey answered. */
  kmsKeyArn?: string;
  /**
   * A rotation's intent (`POST …/certificate`): only the key is undone, never the service (`version` is unused).
   */
  keyOnly?: boolean;
}

/** A create in progress: what it will write, and when the invocation writing it has certainly ended. */
export interface CreateIntent {
  id: string;
  services: PlannedService[];
  /** Epoch ms after which no invocation can still be working on this create. */
  expiresAt: number;
}

/**
 * The write-ahead record that keeps a create all-or-nothing even when its Lambda invocation is cut off part way
 * (timeout, crash): `begin` before the first write, `end` after the last. A create cut off in between leaves
 * its intent behind; once expired, the next create finds it with {@link expired} and removes what it planned.
 */
export interface CreateJournal {
  begin(intent: CreateIntent, options?: CallOptions): Promise<void>;
  /**
   * Writes the intent again after a service of it got a KMS key (`kmsKeyArn` set): a create cut off after this has
   * the key's deletion scheduled by the undo. (One cut off between CreateKey and this note leaves the key, tagged
   * with its service, for an operator.)
   */
  noteKey(intent: CreateIntent, options?: CallOptions): Promise<void>;
  /** The create is over (complete, or undone): its intent goes. */
  end(id: string, options?: CallOptions): Promise<void>;
  /** Intents whose invocation has ended without committing, as of `now`. */
  expired(now: number, options?: CallOptions): Promise<CreateIntent[]>;
}

export interface DynamoDbCreateJournalOptions {
  client: DynamoDbOperations;
  /** The services table: intents live beside the services, so the admin function needs no other table. */
  tableName: string;
}

const s = (v: string): AttributeValue => ({ S: v });

/** CreateJournal on the services table, one item per intent keyed `#create#<id>` (see lib/tables.ts). */
export class DynamoDbCreateJournal implements CreateJournal {
  private readonly client: DynamoDbOperations;
  private readonly tableName: string;

  constructor(options: DynamoDbCreateJournalOptions) {
    this.client = options.client;
    this.tableName = options.tableName;
  }

  private key(id: string): Record<string, AttributeValue> {
    return { [SERVICES_TABLE.partitionKey]: s(`${SERVICES_TABLE.journalKeyPrefix}${id}`) };
  }

  async begin(intent: CreateIntent, options?: CallOptions): Promise<void> {
    try {
      await this.client.putItem(
        {
          TableName: this.tableName,
          Item: {
            ...this.key(intent.id),
            expires_at: { N: String(intent.expiresAt) },
            services: {
              L: intent.services.map((p) => ({
                M: {
                  name: s(p.name),
                  version: s(p.version),
                  managed_secret: { BOOL: p.managedSecret },
                  ...(p.kmsKeyArn ? { kms_key_arn: s(p.kmsKeyArn) } : {}),
                  ...(p.keyOnly ? { key_only: { BOOL: true } } : {}),
                },
              })),
            },
          },
        },
        options,
      );
    } catch (error) {
      throw storeFailure('create journal write failed', error);
    }
  }

  async noteKey(intent: CreateIntent, options?: CallOptions): Promise<void> {
    // The whole intent again (PutItem, as begin): the admin role has no UpdateItem on the services table.
    await this.begin(intent, options);
  }

  async end(id: string, options?: CallOptions): Promise<void> {
    try {
      await this.client.deleteItem({ TableName: this.tableName, Key: this.key(id) }, options);
    } catch (error) {
      throw storeFailure('create journal delete failed', error);
    }
  }

  async expired(now: number, options?: CallOptions): Promise<CreateIntent[]> {
    const intents: CreateIntent[] = [];
    let startKey: Record<string, AttributeValue> | undefined;
    try {
      do {
        const out = await this.client.scan(
          {
            TableName: this.tableName,
            ConsistentRead: true,
            FilterExpression: 'begins_with(#name, :journal) AND #expires < :now',
            ExpressionAttributeNames: { '#name': SERVICES_TABLE.partitionKey, '#expires': 'expires_at' },
            ExpressionAttributeValues: {
              ':journal': s(SERVICES_TABLE.journalKeyPrefix),
              ':now': { N: String(now) },
            },
            ExclusiveStartKey: startKey,
          },
          options,
        );
        for (const item of out.Items ?? []) {
          intents.push({
            id: (item[SERVICES_TABLE.partitionKey]?.S ?? '').slice(SERVICES_TABLE.journalKeyPrefix.length),
            expiresAt: Number(item.expires_at?.N),
            services: (item.services?.L ?? []).map((entry) => ({
              name: entry.M?.name?.S ?? '',
              version: entry.M?.version?.S ?? '',
              managedSecret: entry.M?.managed_secret?.BOOL === true,
              ...(entry.M?.kms_key_arn?.S ? { kmsKeyArn: entry.M.kms_key_arn.S } : {}),
              ...(entry.M?.key_only?.BOOL ? { keyOnly: true } : {}),
            })),
          });
        }
        startKey = out.LastEvaluatedKey;
      } while (startKey);
    } catch (error) {
      throw storeFailure('create journal scan failed', error);
    }
    return intents;
  }
}
