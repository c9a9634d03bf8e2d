import { isIP } from 'node:net';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import * as z from 'zod';
import type { ServiceConfig } from '../service-config';

/** Delegated scopes when a service names none. */
export const DEFAULT_USER_SCOPES = 'openid profile offline_access https://graph.microsoft.com/User.Read';
/** Always asked for: `openid` yields the id_token that names the user, `offline_access` the refresh token. */
const REQUIRED_USER_SCOPES = ['openid', 'offline_access'];

/** A caller's identifier for one of its users (`user=` of the delegated routes). */
export const USER_KEY_PATTERN = /^[A-Za-z0-9._@:-]{1,128}$/;

export const UserKeySchema = z
  .string({ error: 'is required' })
  .regex(USER_KEY_PATTERN, 'must match ^[A-Za-z0-9._@:-]{1,128}$ (the caller’s own identifier for the user)');

/** Loopback hosts, the only ones a plain-http redirect URI may name (RFC 8252 §7.3). */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '');
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h === '::1';
}

const RedirectUriSchema = z
  .string({ error: 'must be a string' })
  .max(2048, 'must be at most 2048 characters')
  .refine(
    (u) => {
      try {
        const url = new URL(u);
        if (url.hash || url.username || url.password) return false;
        return url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHost(url.hostname));
      } catch {
        return false;
      }
    },
    {
      message:
        'must be an absolute https URL (plain http only for loopback hosts), without fragment or credentials',
    },
  );

const HOST =
  /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?::\d{1,5})?$/i;

const UserScopesSchema = z
  .string({ error: 'must be a space-separated string' })
  .transform((s) => s.trim().split(/\s+/).filter(Boolean))
  .refine((list) => list.length > 0 && list.length <= 20, { message: 'must list between 1 and 20 scopes' })
  .refine((list) => list.every((s) => s.length <= 512 && /^[\x21-\x7e]+$/.test(s)), {
    message: 'each scope must be printable ASCII without spaces, at most 512 characters',
  })
  .transform((list) => list.join(' '));

/** The authorization code flow's fields of a service's config (added to the service schema). */
export const delegatedConfigShape = {
  user_scopes: UserScopesSchema.optional().describe(
    `Delegated scopes (space-separated) asked for in the authorization code flow; default "${DEFAULT_USER_SCOPES}". openid and offline_access are always added.`,
  ),
  redirect_uri: RedirectUriSchema.optional().describe(
    'Redirect URI registered on the app; default the broker’s own callback <api base URL>/api/v2/{service}/sso.',
  ),
  return_to_hosts: z
    .array(z.string().regex(HOST, 'must be a host name (optionally with :port)').toLowerCase(), {
      error: 'must be a list of host names',
    })
    .max(20, 'must list at most 20 hosts')
    .optional()
    .describe('Hosts that return_to may name: after consent the browser is sent there (303).'),
  prompt: z
    .enum(['login', 'consent', 'select_account', 'none'], {
      error: 'must be "login", "consent", "select_account" or "none"',
    })
    .optional()
    .describe('Entra prompt parameter of the authorize request.'),
};

/** The delegated fields as stored (part of ServiceConfig). */
export interface DelegatedConfig {
  user_scopes?: string;
  redirect_uri?: string;
  return_to_hosts?: string[];
  prompt?: 'login' | 'consent' | 'select_account' | 'none';
}

/** Whether the service serves the authorization code flow (DreamFactory: `grant_type: authorization_code`). */
export function allowsAuthorizationCode(config: Pick<ServiceConfig, 'grant_type'>): boolean {
  return config.grant_type === 'authorization_code';
}

/** The delegated scopes of a service as asked for at consent, with openid and offline_access added. */
export function userScopesOf(config: DelegatedConfig): string[] {
  const scopes = (config.user_scopes ?? DEFAULT_USER_SCOPES).split(' ');
  for (const required of REQUIRED_USER_SCOPES) if (!scopes.includes(required)) scopes.unshift(required);
  return scopes;
}

/**
 * The resource scopes of a service (without the OpenID ones), each of which a `user_token` call may ask for;
 * the first is the default.
 */
export function resourceScopesOf(config: DelegatedConfig): string[] {
  const oidc = new Set(['openid', 'profile', 'email', 'offline_access']);
  return userScopesOf(config).filter((s) => !oidc.has(s));
}

/** The redirect URI of a service: configured, or the broker's own callback under `apiBaseUrl`. */
export function redirectUriOf(config: DelegatedConfig, apiBaseUrl: string, service: string): string {
  return config.redirect_uri ?? `${apiBaseUrl.replace(/\/+$/, '')}/api/v2/${encodeURIComponent(service)}/sso`;
}

/** The delegated fields as DynamoDB attributes of the service item's `config` map (absent fields omitted). */
export function delegatedConfigToItem(config: DelegatedConfig): Record<string, AttributeValue> {
  const item: Record<string, AttributeValue> = {};
  if (config.user_scopes !== undefined) item.user_scopes = { S: config.user_scopes };
  if (config.redirect_uri !== undefined) item.redirect_uri = { S: config.redirect_uri };
  if (config.return_to_hosts !== undefined)
    item.return_to_hosts = { L: config.return_to_hosts.map((h) => ({ S: h })) };
  if (config.prompt !== undefined) item.prompt = { S: config.prompt };
  return item;
}

/** The delegated fields read back from the service item's `config` map. */
export function delegatedConfigFromItem(item: Record<string, AttributeValue>): DelegatedConfig {
  const config: DelegatedConfig = {};
  if (item.user_scopes?.S !== undefined) config.user_scopes = item.user_scopes.S;
  if (item.redirect_uri?.S !== undefined) config.redirect_uri = item.redirect_uri.S;
  if (item.return_to_hosts?.L !== undefined) {
    config.return_to_hosts = item.return_to_hosts.L.flatMap((h) => (h.S !== undefined ? [h.S] : []));
  }
  const prompt = item.prompt?.S;
  if (prompt === 'login' || prompt === 'consent' || prompt === 'select_account' || prompt === 'none') {
    config.prompt = prompt;
  }
  return config;
}
