/**
 * DynamoDB table layouts, shared by the CDK stack (infra/) and local mode (local/) so that both create
 * exactly the tables the adapters in lib/ expect.
 */

/**
 * Services table: one item per registered service, keyed by its name. Creates in progress leave one journal
 * item each beside them (lib/create-journal.ts), keyed `#create#<id>`: no service name can start with `#`.
 */
export const SERVICES_TABLE = {
  partitionKey: 'name',
  /** Key prefix of create journal items; every reader of services skips keys with it. */
  journalKeyPrefix: '#create#',
} as const;

/**
 * Token cache table: one item per (service, service config version, scope).
 * The partition key is the service name, so clearing a service's tokens is one Query plus deletes;
 * the sort key starts with the service's config version, so a changed or re-created service never
 * reads a token that was issued for its previous configuration.
 */
export const TOKEN_CACHE_TABLE = {
  partitionKey: 'service',
  sortKey: 'cache_key',
  /** Epoch seconds at which DynamoDB may delete the item: token expiry minus the 60 s safety margin. */
  ttlAttribute: 'ttl',
} as const;

/**
 * User grants table (authorization code flow): the vault of delegated refresh tokens, one item per (service,
 * user_key), and the pending consent states, one item per state under the partition `state#<sha256 of state>`
 * (service names cannot contain `#`). State items carry a TTL; grants do not expire by themselves.
 */
export const USER_GRANTS_TABLE = {
  partitionKey: 'service',
  sortKey: 'user_key',
  ttlAttribute: 'ttl',
} as const;
