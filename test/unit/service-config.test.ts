import { ValidationError } from '../../lib/errors';
import { RESERVED_SERVICE_NAMES, ServiceInputSchema, ServicePatchSchema } from '../../lib/service-config';
import { parseOrThrow } from '../../lib/validation';

const CLIENT_ID = '9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b';
const TENANT_ID = '3c1d7e9a-5b2f-4a68-9d0e-7f1a2b3c4d5e';
const CLIENT_SECRET = 'unit-test-client-secret';

type Body = Record<string, unknown> & { config: Record<string, unknown> };

/** A valid service body with `overrides` merged into it and `config` merged into its config. */
function body(overrides: Record<string, unknown> = {}, config: Record<string, unknown> = {}): Body {
  return {
    name: 'graph',
    ...overrides,
    config: { client_id: CLIENT_ID, client_secret: CLIENT_SECRET, tenant_id: TENANT_ID, ...config },
  };
}

/** The ValidationError parsing `value` throws (fails the test when parsing succeeds). */
function validationErrorOf(value: unknown, prefix?: string): ValidationError {
  try {
    parseOrThrow(ServiceInputSchema, value, prefix);
  } catch (error) {
    if (error instanceof ValidationError) return error;
    throw error;
  }
  throw new Error('expected a ValidationError, the value was accepted');
}

const parse = (value: unknown) => parseOrThrow(ServiceInputSchema, value);

describe('ServiceInputSchema via parseOrThrow', () => {
  describe('a valid service', () => {
    it('applies the defaults of type, is_active, grant_type and scopes', () => {
      const parsed = parse(body());
      expect(parsed).toMatchObject({
        name: 'graph',
        type: 'oauth_azure_ad',
        is_active: true,
        config: { grant_type: 'client_credentials', scopes: 'https://graph.microsoft.com/.default' },
      });
    });

    it('leaves label, description and is_client_credentials unset when not sent', () => {
      const parsed = parse(body());
      expect(parsed.label).toBeUndefined();
      expect(parsed.description).toBeUndefined();
      expect(parsed.config.is_client_credentials).toBeUndefined();
    });

    it('trims the client id and tenant id', () => {
      const parsed = parse(body({}, { client_id: ` ${CLIENT_ID} `, tenant_id: ` ${TENANT_ID}\n` }));
      expect(parsed.config.client_id).toBe(CLIENT_ID);
      expect(parsed.config.tenant_id).toBe(TENANT_ID);
    });
  });

  describe('messages', () => {
    it('name the field and the problem', () => {
      const error = validationErrorOf(body({}, { client_id: 'my-app' }));
      expect(error.message).toBe('config.client_id: must be the application (client) ID, a GUID');
    });

    it('name every offending field, separated by "; "', () => {
      const error = validationErrorOf(body({ is_active: 'yes' }, { client_id: 'my-app' }));
      expect(error.message.split('; ').sort()).toEqual([
        'config.client_id: must be the application (client) ID, a GUID',
        'is_active: must be true or false',
      ]);
    });

    it('list the issues as {field, message} in the context', () => {
      const error = validationErrorOf(body({ is_active: 'yes' }));
      expect(error.context).toEqual({ issues: [{ field: 'is_active', message: 'must be true or false' }] });
    });

    it('start with the prefix, e.g. the item of an envelope', () => {
      const error = validationErrorOf(body({}, { client_id: 'my-app' }), 'resource[2]');
      expect(error.message).toMatch(/^resource\[2\]\.config\.client_id: /);
    });

    it('call an unknown top-level field an unknown field', () => {
      expect(validationErrorOf(body({ colour: 'blue' })).message).toBe('colour: unknown field');
    });

    it('call an unknown config field an unknown field', () => {
      expect(validationErrorOf(body({}, { client_certificate: 'pem' })).message).toBe(
        'config.client_certificate: unknown field',
      );
    });

    it('name a missing required field', () => {
      const value = body();
      delete value.config.client_id;
      expect(validationErrorOf(value).message).toMatch(/^config\.client_id: /);
    });

    it('say that a missing field is required rather than of the wrong type', () => {
      const value = body();
      delete value.config.client_id;
      expect(validationErrorOf(value).message).toMatch(/^config\.client_id: .*required/);
    });

    it('say that a missing config object is required', () => {
      const { config: _config, ...value } = body();
      expect(validationErrorOf(value).message).toMatch(/^config: .*required/);
    });

    it('name the body itself when it is not an object', () => {
      expect(validationErrorOf('graph').message).toMatch(/^\(body\): /);
    });

    it('never contain the client secret', () => {
      const longSecret = `x${'y'.repeat(1100)}`;
      const error = validationErrorOf(body({ is_active: 'no' }, { client_secret: longSecret }));
      expect(error.message).toContain('config.client_secret: must be at most 1024 characters');
      expect(error.message.includes(longSecret)).toBe(false);
      expect(JSON.stringify(error.context).includes(longSecret)).toBe(false);
    });

    it('never echo a rejected value', () => {
      const error = validationErrorOf(body({}, { tenant_id: 'zz-not-a-tenant-zz' }));
      expect(error.message).not.toContain('zz-not-a-tenant-zz');
    });
  });

  describe('scopes', () => {
    it('are normalised to single spaces', () => {
      const parsed = parse(
        body({}, { scopes: '  https://graph.microsoft.com/.default \t https://vault.azure.net/.default\n' }),
      );
      expect(parsed.config.scopes).toBe(
        'https://graph.microsoft.com/.default https://vault.azure.net/.default',
      );
    });

    it('accept an application ID URI resource', () => {
      expect(parse(body({}, { scopes: `api://${CLIENT_ID}/.default` })).config.scopes).toBe(
        `api://${CLIENT_ID}/.default`,
      );
    });

    it.each([
      ['a delegated permission', 'https://graph.microsoft.com/User.Read', /\/\.default/],
      ['nothing but spaces', '   ', /must list at least one scope/],
      [
        'a repeated scope',
        'https://graph.microsoft.com/.default https://graph.microsoft.com/.default',
        /repeat/,
      ],
      [
        'more than 10 scopes',
        Array.from({ length: 11 }, (_, i) => `api://app${i}/.default`).join(' '),
        /at most 10 scopes/,
      ],
    ])('refuse %s, naming config.scopes', (_what, scopes, problem) => {
      const error = validationErrorOf(body({}, { scopes }));
      expect(error.message).toMatch(/^config\.scopes: /);
      expect(error.message).toMatch(problem);
    });
  });

  describe('tenant_id', () => {
    it.each([
      ['a GUID', TENANT_ID],
      ['an upper-case GUID', TENANT_ID.toUpperCase()],
      ['a verified domain', 'contoso.onmicrosoft.com'],
      ['a custom domain', 'login.contoso.com'],
    ])('accepts %s', (_what, tenant) => {
      expect(parse(body({}, { tenant_id: tenant })).config.tenant_id).toBe(tenant);
    });

    it.each(['common', 'organizations', 'consumers', 'Common'])(
      'refuses the multi-tenant alias %s, naming config.tenant_id',
      (tenant) => {
        expect(validationErrorOf(body({}, { tenant_id: tenant })).message).toMatch(
          /^config\.tenant_id: must name one tenant/,
        );
      },
    );

    it.each([
      ['a word', 'contoso'],
      ['a GUID with a missing digit', '3c1d7e9a-5b2f-4a68-9d0e-7f1a2b3c4d5'],
      ['a path', 'contoso.onmicrosoft.com/evil'],
      ['an empty string', ''],
    ])('refuses %s, naming config.tenant_id', (_what, tenant) => {
      expect(validationErrorOf(body({}, { tenant_id: tenant })).message).toMatch(/^config\.tenant_id: /);
    });
  });

  describe('name', () => {
    it.each([
      ['an upper-case letter', 'Graph'],
      ['a leading digit', '1graph'],
      ['a single character', 'g'],
      ['65 characters', `g${'a'.repeat(64)}`],
      ['a space', 'my graph'],
      ['a slash', 'my/graph'],
    ])('refuses a name with %s', (_what, name) => {
      expect(validationErrorOf(body({ name })).message).toMatch(/^name: must match/);
    });

    it('accepts 64 characters of letters, digits, _ and -', () => {
      const name = `g${'a1_-'.repeat(15)}abc`;
      expect(name).toHaveLength(64);
      expect(parse(body({ name })).name).toBe(name);
    });

    it.each(RESERVED_SERVICE_NAMES)('refuses the reserved name %s', (name) => {
      expect(validationErrorOf(body({ name })).message).toBe('name: is a reserved name');
    });
  });
});

describe('ServicePatchSchema', () => {
  it('names a config of the wrong type as "config: must be an object"', () => {
    expect(() => parseOrThrow(ServicePatchSchema, { config: 'nope' })).toThrow('config: must be an object');
  });
});
