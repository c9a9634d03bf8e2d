import {
  AuthorityPolicy,
  DEFAULT_AUTHORITY_TEMPLATE,
  MICROSOFT_AUTHORITY_HOSTS,
  tokenEndpointFor,
} from '../../lib/authority';
import { ValidationError } from '../../lib/errors';

/** The error `fn` throws (fails the test when it throws nothing). */
function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected an error, none was thrown');
}

const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';

describe('AuthorityPolicy', () => {
  describe('Microsoft clouds', () => {
    it.each(MICROSOFT_AUTHORITY_HOSTS)('allows https to %s without any configuration', (host) => {
      const policy = new AuthorityPolicy();
      expect(() =>
        policy.assertAllowed(new URL(`https://${host}/${TENANT}/oauth2/v2.0/token`)),
      ).not.toThrow();
    });

    it('lists exactly the seven Microsoft cloud login hosts', () => {
      expect([...MICROSOFT_AUTHORITY_HOSTS].sort()).toEqual(
        [
          'login.microsoftonline.com',
          'login.microsoft.com',
          'login.windows.net',
          'login.microsoftonline.us',
          'login.usgovcloudapi.net',
          'login.partner.microsoftonline.cn',
          'login.chinacloudapi.cn',
        ].sort(),
      );
    });

    it('matches a Microsoft host in any letter case', () => {
      const policy = new AuthorityPolicy();
      expect(() => policy.assertAllowed(new URL('https://LOGIN.MicrosoftOnline.COM/x'))).not.toThrow();
    });

    it('allows a Microsoft host on the explicit default port 443', () => {
      const policy = new AuthorityPolicy();
      expect(() => policy.assertAllowed(new URL('https://login.microsoftonline.com:443/x'))).not.toThrow();
    });

    it('refuses a Microsoft host on another port', () => {
      const policy = new AuthorityPolicy();
      expect(() => policy.assertAllowed(new URL('https://login.microsoftonline.com:8443/x'))).toThrow(
        ValidationError,
      );
    });

    it('refuses a look-alike subdomain of a Microsoft host', () => {
      const policy = new AuthorityPolicy();
      expect(() => policy.assertAllowed(new URL('https://login.microsoftonline.com.evil.example/x'))).toThrow(
        ValidationError,
      );
    });

    it('refuses plain http to a Microsoft host', () => {
      const policy = new AuthorityPolicy();
      expect(() => policy.assertAllowed(new URL('http://login.microsoftonline.com/x'))).toThrow(
        ValidationError,
      );
    });
  });

  describe('hosts that are not listed', () => {
    it('refuses an unlisted host with a ValidationError naming the host', () => {
      const error = thrownBy(() =>
        new AuthorityPolicy().assertAllowed(new URL('https://evil.example.com/t')),
      );
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).message).toContain('evil.example.com');
    });

    it('names the field and the host in the error context', () => {
      const error = thrownBy(() =>
        new AuthorityPolicy().assertAllowed(new URL('https://evil.example.com:8443/t')),
      ) as ValidationError;
      expect(error.context).toEqual({ field: 'config.authority_url', host: 'evil.example.com:8443' });
    });

    it('refuses schemes other than http and https', () => {
      const policy = new AuthorityPolicy('evil.example.com');
      expect(() => policy.assertAllowed(new URL('ftp://evil.example.com/t'))).toThrow(ValidationError);
    });
  });

  describe('hosts listed by the operator', () => {
    it('allows https to a listed host on any port when the entry has no port', () => {
      const policy = new AuthorityPolicy('idp.example.com');
      expect(() => policy.assertAllowed(new URL('https://idp.example.com/t'))).not.toThrow();
      expect(() => policy.assertAllowed(new URL('https://idp.example.com:8443/t'))).not.toThrow();
    });

    it('allows a host:port entry only on that port', () => {
      const policy = new AuthorityPolicy('idp.example.com:8443');
      expect(() => policy.assertAllowed(new URL('https://idp.example.com:8443/t'))).not.toThrow();
      expect(() => policy.assertAllowed(new URL('https://idp.example.com:9443/t'))).toThrow(ValidationError);
    });

    it('treats a host:port entry without a port in the URL as the scheme default port', () => {
      const policy = new AuthorityPolicy('idp.example.com:8443');
      expect(() => policy.assertAllowed(new URL('https://idp.example.com/t'))).toThrow(ValidationError);
    });

    it('matches a host:443 entry to an https URL without a port', () => {
      const policy = new AuthorityPolicy('idp.example.com:443');
      expect(() => policy.assertAllowed(new URL('https://idp.example.com/t'))).not.toThrow();
    });

    it('reads a comma-separated list with spaces and empty entries', () => {
      const policy = new AuthorityPolicy(' a.example.com , ,b.example.com:8443 ');
      expect(() => policy.assertAllowed(new URL('https://a.example.com/t'))).not.toThrow();
      expect(() => policy.assertAllowed(new URL('https://b.example.com:8443/t'))).not.toThrow();
    });

    it('accepts the list as an array', () => {
      const policy = new AuthorityPolicy(['a.example.com']);
      expect(() => policy.assertAllowed(new URL('https://a.example.com/t'))).not.toThrow();
    });

    it('matches listed hosts case-insensitively', () => {
      const policy = new AuthorityPolicy('IdP.Example.com');
      expect(() => policy.assertAllowed(new URL('https://idp.example.COM/t'))).not.toThrow();
    });

    it('refuses a configuration entry that is not a host or host:port', () => {
      expect(() => new AuthorityPolicy('https://idp.example.com/path')).toThrow(
        /TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS/,
      );
    });
  });

  describe('plain http', () => {
    it.each([
      ['127.0.0.1:4010', 'http://127.0.0.1:4010/t'],
      ['localhost:4010', 'http://localhost:4010/t'],
      ['[::1]:4010', 'http://[::1]:4010/t'],
    ])('allows http to the listed loopback entry %s', (entry, url) => {
      const policy = new AuthorityPolicy(entry);
      expect(() => policy.assertAllowed(new URL(url))).not.toThrow();
    });

    it('refuses http to a loopback host that is not listed', () => {
      const policy = new AuthorityPolicy();
      expect(() => policy.assertAllowed(new URL('http://127.0.0.1:4010/t'))).toThrow(ValidationError);
    });

    it('refuses http to a listed loopback host on a port that is not listed', () => {
      const policy = new AuthorityPolicy('127.0.0.1:4010');
      const error = thrownBy(() => policy.assertAllowed(new URL('http://127.0.0.1:4011/t')));
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).message).toContain('127.0.0.1:4011');
    });

    it('refuses http to a listed host that is not loopback', () => {
      const policy = new AuthorityPolicy('idp.example.com');
      const error = thrownBy(() => policy.assertAllowed(new URL('http://idp.example.com/t')));
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).message).toContain('idp.example.com');
    });

    it('refuses http to a listed private (non-loopback) address', () => {
      const policy = new AuthorityPolicy('10.0.0.5:4010');
      expect(() => policy.assertAllowed(new URL('http://10.0.0.5:4010/t'))).toThrow(ValidationError);
    });
  });
});

describe('tokenEndpointFor', () => {
  it('uses login.microsoftonline.com for the tenant when no authority is given', () => {
    expect(tokenEndpointFor(undefined, TENANT).href).toBe(
      `https://login.microsoftonline.com/${TENANT}/oauth2/v2.0/token`,
    );
  });

  it('has the documented default authority template', () => {
    expect(DEFAULT_AUTHORITY_TEMPLATE).toBe('https://login.microsoftonline.com/{tenant_id}');
  });

  it('substitutes {tenant_id} in the authority', () => {
    expect(
      tokenEndpointFor('https://login.microsoftonline.us/{tenant_id}', 'contoso.onmicrosoft.com').href,
    ).toBe('https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token');
  });

  it('ignores trailing slashes of the authority', () => {
    expect(tokenEndpointFor('https://login.microsoftonline.com/{tenant_id}//', TENANT).href).toBe(
      `https://login.microsoftonline.com/${TENANT}/oauth2/v2.0/token`,
    );
  });

  it('uses an authority without a placeholder as it is', () => {
    expect(tokenEndpointFor('http://127.0.0.1:4010/fixed-tenant', TENANT).href).toBe(
      'http://127.0.0.1:4010/fixed-tenant/oauth2/v2.0/token',
    );
  });

  it.each([
    ['a query', 'https://login.microsoftonline.com/{tenant_id}?x=1'],
    ['a fragment', 'https://login.microsoftonline.com/{tenant_id}#x'],
    ['credentials', 'https://user:pass@login.microsoftonline.com/{tenant_id}'],
    ['only a user name', 'https://user@login.microsoftonline.com/{tenant_id}'],
  ])('refuses an authority with %s, naming config.authority_url', (_what, authority) => {
    const error = thrownBy(() => tokenEndpointFor(authority, TENANT));
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).message).toMatch(/^config\.authority_url: /);
  });

  it('refuses an authority that is not an absolute URL', () => {
    const error = thrownBy(() => tokenEndpointFor('login.microsoftonline.com/{tenant_id}', TENANT));
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).message).toMatch(/^config\.authority_url: must be an absolute URL/);
  });
});
