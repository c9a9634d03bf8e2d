import * as z from 'zod';
import { KMS_TAG_VALUE_PATTERN } from '../lib/credentials/kms-tags';

/**
 * What the README says about a variable: its meaning, and what applies when it is unset and has no default
 * (`unset`). `npm run docs` writes the README's configuration table from these (local/readme-tables.ts), and a
 * unit test fails when the table and the schema differ.
 */
type VariableDoc = { description: string; unset?: string };

const doc = (description: string, unset?: string): VariableDoc => ({ description, unset });

/**
 * The environment every Lambda handler reads once, at cold start. The CDK construct (infra/) sets these
 * variables from the resources it creates; local mode (local/server.ts) sets them for its embedded stores.
 * A missing or malformed variable fails the cold start loudly rather than the first request quietly.
 */
export const EnvSchema = z.object({
  TOKEN_BROKER_SERVICES_TABLE: z
    .string()
    .min(1)
    .meta(doc('DynamoDB table of services (local: `token-broker-services`)')),
  TOKEN_BROKER_TOKEN_CACHE_TABLE: z
    .string()
    .min(1)
    .meta(doc('DynamoDB token cache table, TTL attribute `ttl` (local: `token-broker-tokens`)')),
  TOKEN_BROKER_SECRET_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9/_+=.@-]*\/$/, 'must end with "/" and use only Secrets Manager name characters')
    .default('token-broker/services/')
    .meta(doc('Secrets Manager name prefix for the secrets the broker creates (one per service)')),
  TOKEN_BROKER_TOKEN_KEY_ID: z
    .string()
    .min(1)
    .meta(
      doc(
        'KMS key (id, ARN or alias) that envelope-encrypts every cached token (GenerateDataKey / Decrypt; local: `alias/token-broker-local`)',
      ),
    ),
  TOKEN_BROKER_SECRET_KMS_KEY_ID: z
    .string()
    .min(1)
    .optional()
    .meta(doc('KMS key (id, ARN or alias) for the secrets the broker creates', 'AWS managed key')),
  TOKEN_BROKER_INSTANCE_ID: z
    .string()
    .regex(KMS_TAG_VALUE_PATTERN, 'must be a KMS tag value (letters, digits, spaces and _.:/=+-@)')
    .default('token-broker-local')
    .meta(
      doc(
        'This broker among the brokers of its AWS account and region: the `token-broker:broker` tag value of its KMS signing keys (`kms_certificate`), which IAM requires (the construct sets its `namePrefix`)',
      ),
    ),
  TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS: z
    .string()
    .default('')
    .meta(
      doc(
        "Extra authority hosts (`host` or `host:port`, comma-separated) beyond Microsoft's clouds. Plain `http` only for listed loopback hosts.",
      ),
    ),
  TOKEN_BROKER_ALLOWED_SECRET_ARNS: z
    .string()
    .default('')
    .meta(
      doc(
        'Secrets outside the prefix that services may reference (`client_secret_arn`): ARNs, or prefixes ending in `*`',
      ),
    ),
  TOKEN_BROKER_ENTRA_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .min(100)
    .max(25_000)
    .default(10_000)
    .meta(doc('Timeout of one request to Entra, in milliseconds')),
  TOKEN_BROKER_ENTRA_RETRY_BUDGET_MS: z.coerce
    .number()
    .int()
    .min(100)
    .max(25_000)
    .default(12_000)
    .meta(
      doc(
        'Total time for Entra per token request, retries and Retry-After waits included; keep it below the Lambda timeout',
      ),
    ),
  TOKEN_BROKER_REFRESH_FRACTION: z.coerce
    .number()
    .gt(0)
    .max(1)
    .default(0.5)
    .meta(
      doc("Refresh ahead after this fraction of a token's lifetime (Entra's `refresh_in` wins when sent)"),
    ),
  TOKEN_BROKER_COOLDOWN_MS: z.coerce
    .number()
    .int()
    .min(0)
    .max(600_000)
    .default(30_000)
    .meta(
      doc(
        'After Entra refuses a service (4xx), callers get the refusal for this long without Entra being asked',
      ),
    ),
  // Also how long after a change any instance may still serve the old token (lib/token-memory.ts).
  TOKEN_BROKER_MEMORY_BOUND_MS: z.coerce
    .number()
    .int()
    .min(0)
    .max(1000)
    .default(1000)
    .meta(
      doc(
        'How long an instance serves a token from memory after the DynamoDB read behind it started (0–1000; 0 = no memory tier)',
      ),
    ),
  TOKEN_BROKER_REFRESH_HORIZON_MS: z.coerce
    .number()
    .int()
    .min(1)
    .default(6 * 60_000)
    .meta(
      doc(
        'Scheduled refresh: refreshes tokens reaching their refresh point within this many ms (the construct sets the schedule interval plus one minute)',
      ),
    ),
  TOKEN_BROKER_REFRESH_USED_WITHIN_MS: z.coerce
    .number()
    .int()
    .min(1)
    .default(60 * 60_000)
    .meta(doc('Scheduled refresh: only tokens served within this many ms count as in use and are refreshed')),
  HTTPS_PROXY: z
    .url({ protocol: /^https?$/, error: 'must be a proxy URL such as http://proxy:3128' })
    .optional()
    .meta(
      doc(
        'Proxy (`http://host:port`) for the requests to Entra, for example in a VPC without a NAT gateway (CONNECT tunnel, TLS end to end); AWS calls never use it',
        'Entra is reached directly',
      ),
    ),
  // The authorization code flow's function (functions/delegated.ts); the other functions never read these.
  TOKEN_BROKER_USER_GRANTS_TABLE: z
    .string()
    .min(1)
    .optional()
    .meta(
      doc(
        "DynamoDB table of users' sealed refresh tokens and consent states, TTL attribute `ttl` (local: `token-broker-user-grants`)",
        'required by the delegated function',
      ),
    ),
  TOKEN_BROKER_PUBLIC_BASE_URL: z
    .url()
    .optional()
    .meta(
      doc(
        "The API's public base URL for the default `redirect_uri` of the authorization code flow (custom domains; local mode: `http://HOST:PORT`)",
        'derived from each request (API Gateway domain and stage)',
      ),
    ),
  TOKEN_BROKER_FEDERATION_ISSUER: z
    .url({ error: 'must be a URL' })
    .optional()
    .meta(
      doc(
        "credential_type federated: issuer of this account's web identity tokens (`aws iam get-outbound-web-identity-federation-info`); with the subject set, the roles may call sts:GetWebIdentityToken (local: the embedded STS)",
        'federation off',
      ),
    ),
  TOKEN_BROKER_FEDERATION_AUDIENCES: z
    .string()
    .default('')
    .meta(
      doc(
        'credential_type federated: audiences besides `api://AzureADTokenExchange` that a service may name in `federation_audience` (comma-separated; the construct sets the `federation.audiences` its roles may request)',
      ),
    ),
  TOKEN_BROKER_FEDERATION_SUBJECT: z
    .string()
    .regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/.+$/, 'must be an IAM role ARN')
    .optional()
    .meta(
      doc(
        'credential_type federated: the role ARN the tokens name as subject (local: `TOKEN_BROKER_LOCAL_ROLE_ARN`)',
        'federation off',
      ),
    ),
  POWERTOOLS_SERVICE_NAME: z
    .string()
    .min(1)
    .default('token-broker')
    .meta(doc('Service name in the logs, metrics and traces (Powertools)')),
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
