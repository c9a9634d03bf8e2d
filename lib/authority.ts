import { isIP } from 'node:net';
import { ValidationError } from './errors';

/**
 * The hosts of Microsoft's clouds that issue Entra tokens: global (and its aliases), US Government and China.
 * A client secret may only ever be sent to these, or to hosts the operator lists explicitly.
 */
export const MICROSOFT_AUTHORITY_HOSTS: readonly string[] = [
  'login.microsoftonline.com',
  'login.microsoft.com',
  'login.windows.net',
  'login.microsoftonline.us',
  'login.usgovcloudapi.net',
  'login.partner.microsoftonline.cn',
  'login.chinacloudapi.cn',
];

/** Default authority when a service names none; `{tenant_id}` is substituted. */
export const DEFAULT_AUTHORITY_TEMPLATE = 'https://login.microsoftonline.com/{tenant_id}';

/** The Microsoft clouds a service can live in (`config.cloud`). */
export const CLOUD_NAMES = ['global', 'usgov', 'china'] as const;
export type Cloud = (typeof CLOUD_NAMES)[number];

/** Per cloud: the authority host a service uses unless it names one, and the cloud's Microsoft Graph. */
export const CLOUDS: Readonly<Record<Cloud, { authorityHost: string; graph: string }>> = {
  global: { authorityHost: 'login.microsoftonline.com', graph: 'https://graph.microsoft.com' },
  usgov: { authorityHost: 'login.microsoftonline.us', graph: 'https://graph.microsoft.us' },
  china: { authorityHost: 'login.chinacloudapi.cn', graph: 'https://microsoftgraph.chinacloudapi.cn' },
};

/** The authority template of a cloud (global when none is named). */
export function defaultAuthorityFor(cloud: Cloud = 'global'): string {
  return `https://${CLOUDS[cloud].authorityHost}/{tenant_id}`;
}

/** The scope a service of `cloud` gets when it names none: that cloud's Graph. */
export function defaultScopesFor(cloud: Cloud = 'global'): string {
  return `${CLOUDS[cloud].graph}/.default`;
}

const TOKEN_PATH = '/oauth2/v2.0/token';

interface AllowedHost {
  host: string;
  port?: string;
}

function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '');
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h === '::1';
}

function parseAllowedHost(entry: string): AllowedHost {
  // URL parsing normalises case, IPv6 brackets and default ports the same way as for the authority itself.
  let url: URL;
  try {
    url = new URL(`https://${entry}`);
  } catch {
    throw new Error(`TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS: "${entry}" is not a host or host:port`);
  }
  if (url.pathname !== '/' || url.username || url.search) {
    throw new Error(`TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS: "${entry}" is not a host or host:port`);
  }
  const explicitPort = /:\d+$/.test(entry) ? entry.slice(entry.lastIndexOf(':') + 1) : undefined;
  return { host: url.hostname, port: explicitPort };
}

/**
 * Decides where the broker may send client credentials. Built once from configuration; every service's
 * authority is checked at creation and again before each token request (the allow-list may have shrunk since).
 */
export class AuthorityPolicy {
  private readonly extra: readonly AllowedHost[];

  /** @param extraHosts operator-listed `host` or `host:port` entries (comma-separated string or list). */
  constructor(extraHosts: string | readonly string[] = []) {
    const list = typeof extraHosts === 'string' ? extraHosts.split(',') : extraHosts;
    this.extra = list
      .map((e) => e.trim())
      .filter((e) => e.length > 0)
      .map(parseAllowedHost);
  }

  private isListed(url: URL): boolean {
    const port = url.port || (url.protocol === 'https:' ? '443' : '80');
    return this.extra.some((a) => a.host === url.hostname && (a.port === undefined || a.port === port));
  }

  /**
   * Throws a ValidationError naming the host unless the URL may receive credentials: https to a Microsoft
   * cloud host or a listed host; plain http only to a listed loopback host.
   */
  assertAllowed(url: URL): void {
    if (url.protocol === 'https:') {
      if (MICROSOFT_AUTHORITY_HOSTS.includes(url.hostname) && (url.port === '' || url.port === '443')) return;
      if (this.isListed(url)) return;
      throw new ValidationError(
        `authority host "${url.host}" is not allowed: use a Microsoft cloud login host or add it to TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS`,
        { context: { field: 'config.authority_url', host: url.host } },
      );
    }
    if (url.protocol === 'http:') {
      if (isLoopback(url.hostname) && this.isListed(url)) return;
      throw new ValidationError(
        `authority "${url.protocol}//${url.host}" is not allowed: authorities must use https (plain http only for loopback hosts listed in TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS)`,
        { context: { field: 'config.authority_url', host: url.host } },
      );
    }
    throw new ValidationError(`authority scheme "${url.protocol}" is not allowed: use https`, {
      context: { field: 'config.authority_url' },
    });
  }
}

/**
 * Turns a service's authority (template or URL; without one, its cloud's) and tenant into the v2.0 token endpoint.
 * Throws a ValidationError when the result is not a usable absolute URL.
 */
export function tokenEndpointFor(
  authorityTemplate: string | undefined,
  tenantId: string,
  cloud?: Cloud,
): URL {
  const authority = (authorityTemplate ?? defaultAuthorityFor(cloud))
    .replaceAll('{tenant_id}', encodeURIComponent(tenantId))
    .replace(/\/+$/, '');
  let url: URL;
  try {
    url = new URL(`${authority}${TOKEN_PATH}`);
  } catch {
    throw new ValidationError(
      'config.authority_url: must be an absolute URL such as https://login.microsoftonline.com/{tenant_id}',
      {
        context: { field: 'config.authority_url' },
      },
    );
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new ValidationError('config.authority_url: must not contain credentials, a query or a fragment', {
      context: { field: 'config.authority_url' },
    });
  }
  return url;
}
