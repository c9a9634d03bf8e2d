import { z } from 'zod';

/**
 * The service configuration as administrators send it (DreamFactory's `oauth_azure_ad` service object) and as
 * the broker stores it. The zod schemas here are the single source of truth for validation (and, later, the
 * OpenAPI document).
 */

export const DEFAULT_SCOPES = 'https://graph.microsoft.com/.default';

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

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DOMAIN = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/i;
/** Entra's multi-tenant aliases cannot be used with client credentials (AADSTS50059). */
const MULTI_TENANT_ALIASES = ['common', 'organizations', 'consumers'];

export const ServiceNameSchema = z
  .string({ error: 'must be a string' })
  .regex(
    SERVICE_NAME_PATTERN,
    'must match ^[a-z][a-z0-9_-]{1,63}$ (lowercase letter first, then letters, digits, _ or -)',
  )
  .refine((n) => !RESERVED_SERVICE_NAMES.includes(n), { message: 'is a reserved name' });

const TenantIdSchema = z
  .string({ error: 'must be a string' })
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
  .string({ error: 'must be a space-separated string' })
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
  .string({ error: 'must be a string' })
  .trim()
  .min(1, 'must not be empty')
  .max(2048, 'must be at most 2048 characters');

export const GrantTypeSchema = z.enum(['client_credentials', 'authorization_code'], {
  error: 'must be "client_credentials" or "authorization_code"',
});

const ServiceConfigInputSchema = z
  .object({
    client_id: z
      .string({ error: 'must be a string' })
      .trim()
      .regex(GUID, 'must be the application (client) ID, a GUID'),
    client_secret: z
      .string({ error: 'must be a string' })
      .min(1, 'must not be empty')
      .max(1024, 'must be at most 1024 characters'),
    tenant_id: TenantIdSchema,
    grant_type: GrantTypeSchema.default('client_credentials'),
    is_client_credentials: z.boolean({ error: 'must be true or false' }).optional(),
    scopes: ScopesSchema.default(DEFAULT_SCOPES),
    authority_url: AuthorityUrlSchema.optional(),
  })
  .strict();

/** A service as sent to `POST /api/v2/system/service`. */
export const ServiceInputSchema = z
  .object({
    name: ServiceNameSchema,
    label: z.string({ error: 'must be a string' }).max(255, 'must be at most 255 characters').optional(),
    description: z
      .string({ error: 'must be a string' })
      .max(1024, 'must be at most 1024 characters')
      .optional(),
    type: z.literal('oauth_azure_ad', { error: 'must be "oauth_azure_ad"' }).default('oauth_azure_ad'),
    is_active: z.boolean({ error: 'must be true or false' }).default(true),
    config: ServiceConfigInputSchema,
  })
  .strict();

export type ServiceInput = z.output<typeof ServiceInputSchema>;

/** The non-secret part of a service's configuration, as stored and as shown to administrators. */
export interface ServiceConfig {
  client_id: string;
  tenant_id: string;
  grant_type: 'client_credentials' | 'authorization_code';
  is_client_credentials: boolean;
  scopes: string;
  authority_url?: string;
}

/** Where a service's client secret lives. */
export interface SecretReference {
  /** ARN of the Secrets Manager secret. */
  arn: string;
}

/** A service as stored in the services table. */
export interface ServiceRecord {
  name: string;
  label: string;
  description: string;
  type: 'oauth_azure_ad';
  is_active: boolean;
  config: ServiceConfig;
  secret: SecretReference;
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
  config: ServiceConfig;
}

/** Splits validated input into the stored configuration and the secret value. */
export function splitInput(input: ServiceInput): { config: ServiceConfig; clientSecret: string } {
  const { client_secret: clientSecret, is_client_credentials, ...rest } = input.config;
  return {
    clientSecret,
    config: {
      ...rest,
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
