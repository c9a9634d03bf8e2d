import * as z from 'zod';

/**
 * The environment every Lambda handler reads once, at cold start. The CDK construct (infra/) sets these
 * variables from the resources it creates; local mode (local/server.ts) sets them for its embedded stores.
 * A missing or malformed variable fails the cold start loudly rather than the first request quietly.
 */
const EnvSchema = z.object({
  /** Name of the DynamoDB table holding service configurations. */
  TOKEN_BROKER_SERVICES_TABLE: z.string().min(1),
  /** Name of the DynamoDB table holding cached tokens (TTL attribute `ttl`). */
  TOKEN_BROKER_TOKEN_CACHE_TABLE: z.string().min(1),
  /** Secrets Manager name prefix under which the broker creates one secret per service. */
  TOKEN_BROKER_SECRET_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9/_+=.@-]*\/$/, 'must end with "/" and use only Secrets Manager name characters')
    .default('token-broker/services/'),
  /** KMS key (id, ARN or alias) that envelope-encrypts every cached token (GenerateDataKey / Decrypt). */
  TOKEN_BROKER_TOKEN_KEY_ID: z.string().min(1),
  /** KMS key (id, ARN or alias) used to encrypt the secrets the broker creates; AWS managed key when unset. */
  TOKEN_BROKER_SECRET_KMS_KEY_ID: z.string().min(1).optional(),
  /** Extra authority hosts (`host` or `host:port`, comma-separated) beyond the Microsoft clouds. */
  TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS: z.string().default(''),
  /** Secrets outside the prefix that services may reference (`client_secret_arn`): ARNs, or prefixes ending in `*`. */
  TOKEN_BROKER_ALLOWED_SECRET_ARNS: z.string().default(''),
  /** Timeout of one token request to Entra, in milliseconds. */
  TOKEN_BROKER_ENTRA_TIMEOUT_MS: z.coerce.number().int().min(100).max(25_000).default(10_000),
  /** Total time one token request may spend on Entra including retries; keep it below the Lambda timeout. */
  TOKEN_BROKER_ENTRA_RETRY_BUDGET_MS: z.coerce.number().int().min(100).max(25_000).default(12_000),
  /** Fraction of a token's lifetime after which it is refreshed ahead (unless Entra sends refresh_in). */
  TOKEN_BROKER_REFRESH_FRACTION: z.coerce.number().gt(0).max(1).default(0.5),
  /** How long callers get Entra's refusal of a service without Entra being asked again. */
  TOKEN_BROKER_COOLDOWN_MS: z.coerce.number().int().min(0).max(600_000).default(30_000),
  /**
   * How long a token function instance serves a token from memory after the DynamoDB read behind it started
   * (lib/token-memory.ts); also how long after a change any instance may still serve the old token. 0 turns the
   * memory tier off.
   */
  TOKEN_BROKER_MEMORY_BOUND_MS: z.coerce.number().int().min(0).max(1000).default(1000),
});

export type BrokerEnvironment = z.infer<typeof EnvSchema>;

/** Reads and validates the handler environment; throws naming every bad variable. */
export function readEnvironment(env: NodeJS.ProcessEnv = process.env): BrokerEnvironment {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new Error(`Token Broker is misconfigured: ${problems}`);
  }
  return parsed.data;
}
