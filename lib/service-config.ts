import * as z from 'zod';
import { CLOUD_NAMES, type Cloud, defaultScopesFor } from './authority';
import { type DelegatedConfig, delegatedConfigShape } from './authorization-code/delegated-config';
import {
  ACCEPTED_CREDENTIAL_TYPES,
  type AcceptedCredentialType,
  credentialChoice,
} from './credentials/credential-config';
import {
  type KmsCredential,
  kmsConfigDefaults,
  kmsConfigShape,
  kmsPatchShape,
  kmsView,
} from './credentials/kms-credential-config';

/**
 * The service configuration as administrators send it (DreamFactory's `oauth_azure_ad` service object) and as
 * the broker stores it. The zod schemas here are the single source of truth for validation (and, later, the
 * OpenAPI document).
 */

/** Service names: lowercase, start with a letter, 2-64 characters of letters, digits, `_` and `-`. */
export const SERVICE_NAME_PATTERN = /^[a-z][a-z0-9_-]{1,63}$/;

/** Names that collide with the API's own paths or DreamFactory's system services. */
export const RESERVED_SERVICE_NAMES: readonly string[] = [
  'system',
  'api_docs',
  'user',
  'admin',
  'api',
  'health',
];

/** zod error option: "is required" when the field is missing, `message` when it has the wrong type. */
const typed = (message: string) => ({
  error: (issue: { input?: unknown }) => (issue.input === undefined ? 'is required' : message),
});

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DOMAIN = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/i;
/** Entra's multi-tenant aliases cannot be used with client credentials (AADSTS50059). */
const MULTI_TENANT_ALIASES = ['common', 'organizations', 'consumers'];

export const ServiceNameSchema = z
  .string(typed('must be a string'))
  .regex(
    SERVICE_NAME_PATTERN,
    'must match ^[a-z][a-z0-9_-]{1,63}$ (lowercase letter first, then letters, digits, _ or -)',
  )
  .refine((n) => !RESERVED_SERVICE_NAMES.includes(n), { message: 'is a reserved name' });

const TenantIdSchema = z
  .string(typed('must be a string'))
  .trim()
  .refine((t) => !MULTI_TENANT_ALIASES.includes(t.toLowerCase()), {
    message:
      'must name one tenant: common, organizations and consumers cannot be used with client credentials',
  })
  .refine((t) => GUID.test(t) || DOMAIN.test(t), {
    message: 'must be a tenant GUID or a verified domain such as contoso.onmicrosoft.com',
  });

/** Space-separated scopes, each `<resource>/.default`; normalised to single spaces. */
const ScopesSchema = z
  .string(typed('must be a space-separated string'))
  .transform((s) => s.trim().split(/\s+/).filter(Boolean))
  .refine((list) => list.length > 0, { message: 'must list at least one scope' })
  .refine((list) => list.length <= 10, { message: 'must list at most 10 scopes' })
  .refine((list) => list.every((s) => s.length <= 512 && /^\S+\/\.default$/.test(s)), {
    message:
      'each scope must be of the form <resource>/.default (e.g. https://graph.microsoft.com/.default); the client credentials grant uses application permissions only',
  })
  .refine((list) => new Set(list).size === list.length, { message: 'must not repeat a scope' })
  .transform((list) => list.join(' '));

const AuthorityUrlSchema = z
  .string(typed('must be a string'))
  .trim()
  .min(1, 'must not be empty')
  .max(2048, 'must be at most 2048 characters');

export const GrantTypeSchema = z.enum(['client_credentials', 'authorization_code'], {
  error: 'must be "client_credentials" or "authorization_code"',
});

const CloudSchema = z.enum(CLOUD_NAMES, { error: 'must be "global", "usgov" or "china"' });

/** Secrets Manager secret ARN, as sent in `config.client_secret_arn`. */
export const SECRET_ARN_PATTERN =
  /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$/;

const ClientSecretSchema = z
  .string(typed('must be a string'))
  .min(1, 'must not be empty')
  .max(1024, 'must be at most 1024 characters');

const ClientSecretArnSchema = z
  .string(typed('must be a string'))
  .regex(SECRET_ARN_PATTERN, 'must be the ARN of a Secrets Manager secret');

const PemSchema = z.string(typed('must be a PEM string')).max(16_384, 'must be at most 16384 characters');

/** The config fields; which credential fields are required depends on the type and on create vs update. */
const configShape = {
  credential_type: z
    .enum(ACCEPTED_CREDENTIAL_TYPES, {
      error: 'must be "client_secret", "certificate", "kms_certificate" or "federated"',
    })
    .optional()
    .describe(
      'client_secret (default), certificate (an imported certificate and key, stored in Secrets Manager), kms_certificate (a certificate the broker issues for a KMS key; the private key never leaves KMS) or federated (an AWS STS web identity token; no secret anywhere).',
    ),
  certificate: PemSchema.optional().describe(
    'credential_type certificate: the PEM X.509 certificate registered on the app registration.',
  ),
  private_key: PemSchema.optional().describe(
    'credential_type certificate: its PEM PKCS#8 RSA private key (2048 bits or more). Stored in Secrets Manager, never returned.',
  ),
  certificate_secret_arn: ClientSecretArnSchema.optional().describe(
    'credential_type certificate, instead of certificate and private_key: complete ARN of an existing secret holding the JSON {"certificate": PEM, "private_key": PEM PKCS#8}; the same rules as client_secret_arn. Read, never copied.',
  ),
  ...kmsConfigShape,
  federation_audience: z
    .string(typed('must be a string'))
    .min(1, 'must not be empty')
    .max(1000, 'must be at most 1000 characters')
    .optional()
    .describe(
      'credential_type federated: the audience of the STS token; default api://AzureADTokenExchange.',
    ),
  client_id: z
    .string(typed('must be a string'))
    .trim()
    .regex(GUID, 'must be the application (client) ID, a GUID'),
  client_secret: ClientSecretSchema.optional().describe(
    'The client secret value. Stored in Secrets Manager, never returned. Send this or client_secret_arn.',
  ),
  client_secret_arn: ClientSecretArnSchema.optional().describe(
    'Complete ARN (with the 6-character suffix Secrets Manager adds) of an existing secret holding the client secret: under the broker prefix or allow-listed, never a secret the broker manages for another service. Read, never copied.',
  ),
  tenant_id: TenantIdSchema.describe('Directory (tenant) ID: a GUID or a verified domain.'),
  grant_type: GrantTypeSchema.default('client_credentials'),
  is_client_credentials: z.boolean({ error: 'must be true or false' }).optional(),
  scopes: ScopesSchema.optional().describe(
    "Space-separated scopes, each <resource>/.default; the first is the default for token requests. Default: the cloud's Microsoft Graph.",
  ),
  cloud: CloudSchema.optional().describe(
    'Microsoft cloud: global (login.microsoftonline.com, default), usgov (login.microsoftonline.us) or china (login.chinacloudapi.cn). Picks the default authority and Graph scope.',
  ),
  authority_url: AuthorityUrlSchema.optional().describe(
    "Authority; {tenant_id} is substituted. Default: the cloud's login host, https://login.microsoftonline.com/{tenant_id} for global. Host must be allowed.",
  ),
  // The authorization code flow's fields (lib/authorization-code/delegated-config.ts).
  ...delegatedConfigShape,
};

const topShape = {
  name: ServiceNameSchema,
  label: z.string(typed('must be a string')).max(255, 'must be at most 255 characters').optional(),
  description: z.string(typed('must be a string')).max(1024, 'must be at most 1024 characters').optional(),
  type: z.literal('oauth_azure_ad', { error: 'must be "oauth_azure_ad"' }).default('oauth_azure_ad'),
  is_active: z.boolean({ error: 'must be true or false' }).default(true),
};

/** A service that names no scopes gets its cloud's Graph. */
function withDefaultScopes<T extends { scopes?: string; cloud?: Cloud }>(config: T): T & { scopes: string } {
  return { ...config, scopes: config.scopes ?? defaultScopesFor(config.cloud) };
}

/** A service as sent to `POST /api/v2/system/service`. */
export const ServiceInputSchema = z
  .object({
    ...topShape,
    config: z
      .object(configShape, typed('must be an object'))
      .strict()
      .superRefine(credentialChoice(true))
      .transform(withDefaultScopes),
  })
  .strict();

/** A service after a PATCH was merged into it: the secret may stay as it is (neither field sent). */
export const ServiceMergedSchema = z
  .object({
    ...topShape,
    config: z.object(configShape).strict().superRefine(credentialChoice(false)).transform(withDefaultScopes),
  })
  .strict();

/**
 * The body of `PATCH /api/v2/system/service/{name}`: any subset of the fields; `authority_url: null` returns to
 * the default authority. Checked for types and unknown fields here, then merged and validated as a whole.
 */
export const ServicePatchSchema = z
  .object({
    name: ServiceNameSchema.optional(),
    label: topShape.label,
    description: topShape.description,
    type: z.literal('oauth_azure_ad', { error: 'must be "oauth_azure_ad"' }).optional(),
    is_active: z.boolean({ error: 'must be true or false' }).optional(),
    config: z
      .object(
        {
          client_id: z.string(typed('must be a string')).optional(),
          client_secret: ClientSecretSchema.optional(),
          client_secret_arn: ClientSecretArnSchema.optional(),
          certificate_secret_arn: ClientSecretArnSchema.optional(),
          tenant_id: z.string(typed('must be a string')).optional(),
          grant_type: GrantTypeSchema.optional(),
          is_client_credentials: z.boolean({ error: 'must be true or false' }).optional(),
          scopes: z.string(typed('must be a space-separated string')).optional(),
          cloud: z.string(typed('must be a string')).optional(),
          credential_type: z.string(typed('must be a string')).optional(),
          certificate: PemSchema.optional(),
          private_key: PemSchema.optional(),
          federation_audience: z.string({ error: 'must be a string or null' }).nullable().optional(),
          ...kmsPatchShape,
          authority_url: z.string({ error: 'must be a string or null' }).nullable().optional(),
          // Checked by the merged schema; null returns a field to its default.
          user_scopes: z.string({ error: 'must be a string or null' }).nullable().optional(),
          redirect_uri: z.string({ error: 'must be a string or null' }).nullable().optional(),
          return_to_hosts: z.array(z.string(), { error: 'must be a list or null' }).nullable().optional(),
          prompt: z.string({ error: 'must be a string or null' }).nullable().optional(),
        },
        { error: 'must be an object' },
      )
      .strict()
      .optional(),
  })
  .strict();

export type ServicePatch = z.output<typeof ServicePatchSchema>;
export type ServiceInput = z.output<typeof ServiceInputSchema>;

/** The non-secret part of a service's configuration, as stored and as shown to administrators. */
export interface ServiceConfig extends DelegatedConfig {
  client_id: string;
  tenant_id: string;
  grant_type: 'client_credentials' | 'authorization_code';
  is_client_credentials: boolean;
  scopes: string;
  authority_url?: string;
  /** Absent for the global cloud. */
  cloud?: Cloud;
  /** Absent for client_secret (DreamFactory's bodies and views stay as they were). */
  credential_type?: Exclude<AcceptedCredentialType, 'client_secret'>;
  /** federated: the STS token's audience when not api://AzureADTokenExchange. */
  federation_audience?: string;
  /** kms_certificate: the spec of the active key, and of the keys a rotation creates. */
  key_spec?: 'RSA_2048' | 'RSA_3072';
  /** kms_certificate: validity of each certificate the broker issues. */
  certificate_validity_days?: number;
}

/** The public facts of a `certificate` service's certificate; the key stays in Secrets Manager. */
export interface StoredCertificate {
  pem: string;
  thumbprintSha256: string;
  notAfter: string;
}

/** Where a service's client secret lives. */
export interface SecretReference {
  /** ARN of the Secrets Manager secret. */
  arn: string;
  /**
   * True when the broker created the secret (it rotates and deletes it with the service); false for a secret
   * the administrator brought (`client_secret_arn`), which the broker only reads.
   */
  managed: boolean;
}

/** A service as stored in the services table. */
export interface ServiceRecord {
  name: string;
  label: string;
  description: string;
  type: 'oauth_azure_ad';
  is_active: boolean;
  config: ServiceConfig;
  /** Where the client secret or imported certificate key lives; none for federated services. */
  secret?: SecretReference;
  /** certificate and kms_certificate services: the (active) certificate's public facts. */
  certificate?: StoredCertificate;
  /** kms_certificate services: the active KMS key and a pending next one. */
  kms?: KmsCredential;
  /** Random id that changes on every write; part of every cache key, so old tokens become unreachable. */
  version: string;
  created_at: string;
  updated_at: string;
}

/** The public view of a service: the form administrators send, minus the secret. */
export interface ServiceView {
  name: string;
  label: string;
  description: string;
  type: 'oauth_azure_ad';
  is_active: boolean;
  config: ServiceConfig & {
    client_secret_arn?: string;
    certificate_secret_arn?: string;
    certificate?: string;
    certificate_thumbprint_sha256?: string;
    certificate_not_after?: string;
    kms_key_arn?: string;
    next_certificate?: string;
    next_certificate_thumbprint_sha256?: string;
    next_certificate_not_after?: string;
  };
}

/** The top-level fields of a service created from validated input: label defaults to the name. */
export function topFieldsOf(
  input: ServiceInput,
): Pick<ServiceRecord, 'name' | 'label' | 'description' | 'type' | 'is_active'> {
  return {
    name: input.name,
    label: input.label ?? input.name,
    description: input.description ?? '',
    type: input.type,
    is_active: input.is_active,
  };
}

/** The secret part of validated input: a value to store, an existing secret to use, or nothing (keep). */
export type SecretInput =
  | { clientSecret: string }
  | { clientSecretArn: string }
  | { certificate: string; privateKey: string }
  | { certificateSecretArn: string }
  | undefined;

/**
 * Splits validated input into the stored configuration, the secret input and, for kms_certificate, the key the
 * administrator brought (`kms_key_arn`, checked and recorded apart from the configuration).
 */
export function splitInput(input: z.output<typeof ServiceMergedSchema>): {
  config: ServiceConfig;
  secret: SecretInput;
  kmsKeyArn?: string;
} {
  const {
    client_secret,
    client_secret_arn,
    certificate,
    private_key,
    certificate_secret_arn,
    is_client_credentials,
    credential_type,
    kms_key_arn,
    ...rest
  } = input.config;
  const kms = credential_type === 'kms_certificate' ? kmsConfigDefaults(rest, kms_key_arn) : {};
  return {
    ...(kms_key_arn === undefined ? {} : { kmsKeyArn: kms_key_arn }),
    secret:
      client_secret !== undefined
        ? { clientSecret: client_secret }
        : client_secret_arn !== undefined
          ? { clientSecretArn: client_secret_arn }
          : certificate !== undefined && private_key !== undefined
            ? { certificate, privateKey: private_key }
            : certificate_secret_arn !== undefined
              ? { certificateSecretArn: certificate_secret_arn }
              : undefined,
    config: {
      ...rest,
      ...(credential_type === undefined || credential_type === 'client_secret' ? {} : { credential_type }),
      ...kms,
      // DreamFactory's flag: defaults to whether the grant type is client credentials.
      is_client_credentials: is_client_credentials ?? rest.grant_type === 'client_credentials',
    },
  };
}

/** The caller-facing view of a stored service; never includes the secret or its location. */
export function toServiceView(record: ServiceRecord): ServiceView {
  return {
    name: record.name,
    label: record.label,
    description: record.description,
    type: record.type,
    is_active: record.is_active,
    // A secret the administrator brought is named (it is a reference, not a secret); a managed one is not.
    config: {
      ...record.config,
      ...(record.secret === undefined || record.secret.managed
        ? {}
        : record.config.credential_type === 'certificate'
          ? { certificate_secret_arn: record.secret.arn }
          : { client_secret_arn: record.secret.arn }),
      ...(record.certificate
        ? {
            certificate: record.certificate.pem,
            certificate_thumbprint_sha256: record.certificate.thumbprintSha256,
            certificate_not_after: record.certificate.notAfter,
          }
        : {}),
      ...kmsView(record.kms),
    },
  };
}

/** A stored service in the input form (without any secret field), as the base a PATCH is merged onto. */
export function toEditableInput(record: ServiceRecord): Record<string, unknown> {
  return {
    name: record.name,
    label: record.label,
    description: record.description,
    type: record.type,
    is_active: record.is_active,
    config: { ...record.config },
  };
}

/** Whether the service may use the client credentials grant (DreamFactory's rule). */
export function allowsClientCredentials(config: ServiceConfig): boolean {
  return config.grant_type === 'client_credentials' || config.is_client_credentials;
}

/** The scopes of a service as a list; the first is the default. */
export function scopesOf(config: ServiceConfig): string[] {
  return config.scopes.split(' ');
}
