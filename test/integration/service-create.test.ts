import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { BrokerHarness } from '../fixtures/broker-harness';
import { expectErrorShape } from '../fixtures/error-shape';
import { secretNamesOfService, secretsManagerClient } from '../fixtures/secrets-manager';

/**
 * Registering services through the admin handler: production handler against DynamoDB Local and the embedded
 * Secrets Manager server, over real sockets.
 */

type ServiceBody = ReturnType<BrokerHarness['serviceBody']>;

/** The service as the API shows it: the body that was sent, minus the client secret. */
function withoutSecret(body: ServiceBody) {
  const { client_secret: _secret, ...config } = body.config;
  return { ...body, config };
}

describe('POST /api/v2/system/service', () => {
  let h: BrokerHarness;
  let secrets: SecretsManagerClient;
  let n = 0;
  const fresh = () => `create${++n}`;

  beforeAll(async () => {
    h = await BrokerHarness.start();
    secrets = secretsManagerClient(h.secretsManagerUrl);
  });
  afterAll(async () => {
    secrets.destroy();
    await h.close();
  });

  describe('a valid service', () => {
    it('answers 201 with the stored service in the form it was sent, without the client secret', async () => {
      // Prepare
      const body = h.serviceBody(fresh());
      // Act
      const res = await h.admin('POST', body);
      // Assess
      expect(res.status).toBe(201);
      expect(res.body).toEqual(withoutSecret(body));
    });

    it('never puts the client secret in the response body', async () => {
      const res = await h.admin('POST', h.serviceBody(fresh()));
      expect(res.status).toBe(201);
      expect(res.raw.includes(h.clientSecret)).toBe(false);
      expect(res.raw).not.toContain('client_secret');
    });

    it('stores what it answered: GET returns the same service', async () => {
      const body = h.serviceBody(fresh());
      await h.admin('POST', body);
      const res = await h.admin('GET', undefined, { name: body.name });
      expect(res.status).toBe(200);
      expect(res.body).toEqual(withoutSecret(body));
    });

    it('fills in the defaults: label = name, empty description, oauth_azure_ad, active, client credentials, Graph scope', async () => {
      const name = fresh();
      const res = await h.admin('POST', {
        name,
        config: { client_id: h.clientId, client_secret: h.clientSecret, tenant_id: h.tenantId },
      });
      expect(res.status).toBe(201);
      expect(res.body).toEqual({
        name,
        label: name,
        description: '',
        type: 'oauth_azure_ad',
        is_active: true,
        config: {
          client_id: h.clientId,
          tenant_id: h.tenantId,
          grant_type: 'client_credentials',
          is_client_credentials: true,
          scopes: 'https://graph.microsoft.com/.default',
        },
      });
    });

    it('defaults is_client_credentials to false for an authorization_code service', async () => {
      const body = h.serviceBody(fresh(), {}, { grant_type: 'authorization_code' });
      delete (body.config as Partial<ServiceBody['config']>).is_client_credentials;
      const res = await h.admin('POST', body);
      expect(res.status).toBe(201);
      expect(res.body.config.is_client_credentials).toBe(false);
    });

    it('normalises scopes to single spaces', async () => {
      const body = h.serviceBody(
        fresh(),
        {},
        { scopes: '  https://graph.microsoft.com/.default   https://vault.azure.net/.default ' },
      );
      const res = await h.admin('POST', body);
      expect(res.status).toBe(201);
      expect(res.body.config.scopes).toBe(
        'https://graph.microsoft.com/.default https://vault.azure.net/.default',
      );
    });

    it('keeps the client secret in one Secrets Manager secret tagged with the service name', async () => {
      const name = fresh();
      await h.admin('POST', h.serviceBody(name));
      expect(await secretNamesOfService(secrets, name)).toHaveLength(1);
    });

    it('accepts a service whose tenant is a verified domain', async () => {
      const res = await h.admin('POST', h.serviceBody(fresh(), {}, { tenant_id: 'contoso.onmicrosoft.com' }));
      expect(res.status).toBe(201);
      expect(res.body.config.tenant_id).toBe('contoso.onmicrosoft.com');
    });
  });

  describe("DreamFactory's envelope", () => {
    it('creates every service of {"resource": [a, b]} and answers 201 in the envelope', async () => {
      const a = h.serviceBody(fresh());
      const b = h.serviceBody(fresh(), { label: 'second' });
      const res = await h.admin('POST', { resource: [a, b] });
      expect(res.status).toBe(201);
      expect(res.body).toEqual({ resource: [withoutSecret(a), withoutSecret(b)] });
      expect((await h.admin('GET', undefined, { name: a.name })).status).toBe(200);
      expect((await h.admin('GET', undefined, { name: b.name })).status).toBe(200);
    });

    it('never puts a client secret in the envelope response', async () => {
      const res = await h.admin('POST', { resource: [h.serviceBody(fresh()), h.serviceBody(fresh())] });
      expect(res.status).toBe(201);
      expect(res.raw.includes(h.clientSecret)).toBe(false);
    });

    it('answers 400 for duplicate names inside one envelope and creates neither', async () => {
      const name = fresh();
      const res = await h.admin('POST', { resource: [h.serviceBody(name), h.serviceBody(name)] });
      expect(res.status).toBe(400);
      expectErrorShape(400, res.body);
      expect(res.body.error.message).toContain(name);
      expect((await h.admin('GET', undefined, { name })).status).toBe(404);
      expect(await secretNamesOfService(secrets, name)).toEqual([]);
    });

    it('answers 400 for an empty envelope', async () => {
      const res = await h.admin('POST', { resource: [] });
      expect(res.status).toBe(400);
      expectErrorShape(400, res.body);
      expect(res.body.error.message).toMatch(/^resource: /);
    });

    it('names the item of the envelope in a validation message', async () => {
      const second = h.serviceBody(fresh(), {}, { client_id: 'not-a-guid' });
      const res = await h.admin('POST', { resource: [h.serviceBody(fresh()), second] });
      expect(res.status).toBe(400);
      expect(res.body.error.message).toContain('resource[1].config.client_id');
    });
  });

  describe('a name that is taken', () => {
    it('answers 409 and leaves the original service untouched', async () => {
      // Prepare
      const name = fresh();
      await h.createService(name, { label: 'original' });
      // Act
      const res = await h.admin(
        'POST',
        h.serviceBody(name, { label: 'replacement' }, { scopes: 'https://vault.azure.net/.default' }),
      );
      // Assess
      expect(res.status).toBe(409);
      expectErrorShape(409, res.body);
      expect(res.body.error.message).toContain(name);
      const stored = await h.admin('GET', undefined, { name });
      expect(stored.body).toEqual(withoutSecret(h.serviceBody(name, { label: 'original' })));
    });

    it('keeps exactly the original secret of the service', async () => {
      const name = fresh();
      await h.createService(name);
      const before = await secretNamesOfService(secrets, name);
      await h.admin('POST', h.serviceBody(name, {}, { client_secret: 'another-secret-value' }));
      expect(await secretNamesOfService(secrets, name)).toEqual(before);
    });

    it('answers 409 for an envelope whose second name is taken and does not create the first', async () => {
      // Prepare
      const taken = fresh();
      await h.createService(taken, { label: 'original' });
      const first = fresh();
      // Act
      const res = await h.admin('POST', {
        resource: [h.serviceBody(first), h.serviceBody(taken, { label: 'replacement' })],
      });
      // Assess
      expect(res.status).toBe(409);
      expectErrorShape(409, res.body);
      const listed = await h.admin('GET');
      const names = (listed.body.resource as Array<{ name: string; label: string }>).map((s) => s.name);
      expect(names).not.toContain(first);
      expect(listed.body.resource.find((s: { name: string }) => s.name === taken)?.label).toBe('original');
    });

    it('leaves no secret behind for the first service of an envelope refused with 409', async () => {
      const taken = fresh();
      await h.createService(taken);
      const first = fresh();
      await h.admin('POST', { resource: [h.serviceBody(first), h.serviceBody(taken)] });
      expect(await secretNamesOfService(secrets, first)).toEqual([]);
      expect(await secretNamesOfService(secrets, taken)).toHaveLength(1);
    });
  });

  describe('validation', () => {
    type Mutation = (body: Record<string, unknown> & { config: Record<string, unknown> }) => void;
    const cases: Array<[string, Mutation, RegExp]> = [
      [
        'config.client_id is missing',
        (b) => {
          delete b.config.client_id;
        },
        /config\.client_id: /,
      ],
      [
        'config.client_id is not a GUID',
        (b) => {
          b.config.client_id = 'my-application';
        },
        /config\.client_id: must be the application \(client\) ID, a GUID/,
      ],
      [
        'config.client_secret is missing',
        (b) => {
          delete b.config.client_secret;
        },
        /config\.client_secret: /,
      ],
      [
        'config.client_secret is empty',
        (b) => {
          b.config.client_secret = '';
        },
        /config\.client_secret: must not be empty/,
      ],
      [
        'config.tenant_id is common',
        (b) => {
          b.config.tenant_id = 'common';
        },
        /config\.tenant_id: .*common/,
      ],
      [
        'config.tenant_id is neither a GUID nor a domain',
        (b) => {
          b.config.tenant_id = 'my tenant';
        },
        /config\.tenant_id: must be a tenant GUID or a verified domain/,
      ],
      [
        'config.scopes has a scope without /.default',
        (b) => {
          b.config.scopes = 'https://graph.microsoft.com/User.Read';
        },
        /config\.scopes: .*\/\.default/,
      ],
      [
        'config.scopes is not a string',
        (b) => {
          b.config.scopes = ['https://graph.microsoft.com/.default'];
        },
        /config\.scopes: must be a space-separated string/,
      ],
      [
        'config.grant_type is unknown',
        (b) => {
          b.config.grant_type = 'password';
        },
        /config\.grant_type: must be "client_credentials" or "authorization_code"/,
      ],
      [
        'an unknown top-level field is sent',
        (b) => {
          b.colour = 'blue';
        },
        /(^|; )colour: unknown field/,
      ],
      [
        'an unknown config field is sent',
        (b) => {
          b.config.client_certificate = 'pem';
        },
        /config\.client_certificate: unknown field/,
      ],
      [
        'is_active is "yes"',
        (b) => {
          b.is_active = 'yes';
        },
        /(^|; )is_active: must be true or false/,
      ],
      [
        'config.is_client_credentials is a string',
        (b) => {
          b.config.is_client_credentials = 'true';
        },
        /config\.is_client_credentials: must be true or false/,
      ],
      [
        'label is a number',
        (b) => {
          b.label = 42;
        },
        /(^|; )label: must be a string/,
      ],
      [
        'type is not oauth_azure_ad',
        (b) => {
          b.type = 'oauth_google';
        },
        /(^|; )type: must be "oauth_azure_ad"/,
      ],
      [
        'name has uppercase letters',
        (b) => {
          b.name = 'MyService';
        },
        /(^|; )name: must match/,
      ],
      [
        'name is the reserved "system"',
        (b) => {
          b.name = 'system';
        },
        /(^|; )name: is a reserved name/,
      ],
      [
        'config is missing',
        (b) => {
          delete (b as Record<string, unknown>).config;
        },
        /(^|; )config: /,
      ],
    ];

    it.each(cases)('answers 400 naming the field when %s', async (_what, mutate, message) => {
      // Prepare
      const body = structuredClone(h.serviceBody(fresh())) as unknown as Parameters<Mutation>[0];
      mutate(body);
      // Act
      const res = await h.admin('POST', body);
      // Assess
      expect(res.status).toBe(400);
      expectErrorShape(400, res.body);
      expect(res.body.error.message).toMatch(message);
    });

    it('creates nothing for an invalid service', async () => {
      const name = fresh();
      await h.admin('POST', h.serviceBody(name, { is_active: 'yes' }));
      expect((await h.admin('GET', undefined, { name })).status).toBe(404);
      expect(await secretNamesOfService(secrets, name)).toEqual([]);
    });

    it('never echoes the client secret in a validation error', async () => {
      const tooLong = `s${'x'.repeat(1100)}`;
      const res = await h.admin('POST', h.serviceBody(fresh(), {}, { client_secret: tooLong }));
      expect(res.status).toBe(400);
      expect(res.body.error.message).toMatch(/config\.client_secret: must be at most 1024 characters/);
      expect(res.raw.includes(tooLong)).toBe(false);
    });

    it('answers 400 for a body that is a JSON array', async () => {
      const res = await h.admin('POST', [h.serviceBody(fresh())]);
      expect(res.status).toBe(400);
      expectErrorShape(400, res.body);
    });
  });

  describe('where the client secret may be sent', () => {
    it('refuses an authority host that is not allowed with 400 naming the host', async () => {
      const res = await h.admin(
        'POST',
        h.serviceBody(fresh(), {}, { authority_url: 'https://evil.example.com/{tenant_id}' }),
      );
      expect(res.status).toBe(400);
      expectErrorShape(400, res.body);
      expect(res.body.error.message).toContain('evil.example.com');
    });

    it('creates neither service nor secret for a refused authority', async () => {
      const name = fresh();
      await h.admin(
        'POST',
        h.serviceBody(name, {}, { authority_url: 'https://evil.example.com/{tenant_id}' }),
      );
      expect((await h.admin('GET', undefined, { name })).status).toBe(404);
      expect(await secretNamesOfService(secrets, name)).toEqual([]);
    });

    it('refuses plain http to a non-loopback host, even a Microsoft one', async () => {
      const res = await h.admin(
        'POST',
        h.serviceBody(fresh(), {}, { authority_url: 'http://login.microsoftonline.com/{tenant_id}' }),
      );
      expect(res.status).toBe(400);
      expectErrorShape(400, res.body);
      expect(res.body.error.message).toContain('login.microsoftonline.com');
    });

    it('refuses plain http to a loopback port that is not listed', async () => {
      const listedPort = Number(new URL(h.emulator.url).port);
      const otherPort = listedPort === 9 ? 10 : 9;
      const res = await h.admin(
        'POST',
        h.serviceBody(fresh(), {}, { authority_url: `http://127.0.0.1:${otherPort}/{tenant_id}` }),
      );
      expect(res.status).toBe(400);
      expectErrorShape(400, res.body);
      expect(res.body.error.message).toContain(`127.0.0.1:${otherPort}`);
    });

    it('accepts plain http to the listed loopback host and port', async () => {
      const res = await h.admin(
        'POST',
        h.serviceBody(fresh(), {}, { authority_url: `${h.emulator.url}/{tenant_id}` }),
      );
      expect(res.status).toBe(201);
    });

    it('refuses an authority with a query string', async () => {
      const res = await h.admin(
        'POST',
        h.serviceBody(fresh(), {}, { authority_url: 'https://login.microsoftonline.com/{tenant_id}?x=1' }),
      );
      expect(res.status).toBe(400);
      expect(res.body.error.message).toMatch(/^config\.authority_url: /);
    });
  });

  describe('malformed requests', () => {
    it('answers 422 in the error shape for a body that is not JSON', async () => {
      const res = await h.admin('POST', '{"name": "broken', {
        headers: { 'Content-Type': 'application/json' },
      });
      expect(res.status).toBe(422);
      expectErrorShape(422, res.body);
    });

    it('answers 415 in the error shape when Content-Type is missing', async () => {
      const res = await h.admin('POST', JSON.stringify(h.serviceBody(fresh())));
      expect(res.status).toBe(415);
      expectErrorShape(415, res.body);
    });

    it('answers 415 for a Content-Type that is not JSON', async () => {
      const res = await h.admin('POST', JSON.stringify(h.serviceBody(fresh())), {
        headers: { 'Content-Type': 'text/plain' },
      });
      expect(res.status).toBe(415);
      expectErrorShape(415, res.body);
    });

    it('answers 413 in the error shape for a body over 64 KiB and creates nothing', async () => {
      const name = fresh();
      const body = JSON.stringify(h.serviceBody(name, { description: 'x'.repeat(64 * 1024) }));
      const res = await h.admin('POST', body, { headers: { 'Content-Type': 'application/json' } });
      expect(res.status).toBe(413);
      expectErrorShape(413, res.body);
      expect((await h.admin('GET', undefined, { name })).status).toBe(404);
    });

    it('accepts a JSON Content-Type with a charset parameter', async () => {
      const res = await h.admin('POST', JSON.stringify(h.serviceBody(fresh())), {
        headers: { 'Content-Type': 'application/json; charset=utf-8' },
      });
      expect(res.status).toBe(201);
    });

    it('accepts the Content-Type header in any letter case, as HTTP header names are case-insensitive', async () => {
      const res = await h.admin('POST', JSON.stringify(h.serviceBody(fresh())), {
        headers: { 'CONTENT-TYPE': 'application/json' },
      });
      expect(res.status).toBe(201);
    });

    it('answers 405 with Allow for PUT', async () => {
      const res = await h.admin('PUT', h.serviceBody(fresh()));
      expect(res.status).toBe(405);
      expectErrorShape(405, res.body);
      expect(res.headers.allow).toBe('GET, POST');
    });
  });
});

describe('GET /api/v2/system/service[/{name}]', () => {
  let h: BrokerHarness;

  beforeAll(async () => {
    h = await BrokerHarness.start();
    await h.createService('listed-one', { label: 'one' });
    await h.createService('listed-two', { label: 'two' });
  });
  afterAll(async () => {
    await h.close();
  });

  it('lists the services in {"resource": [...]}', async () => {
    const res = await h.admin('GET');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      resource: [
        withoutSecret(h.serviceBody('listed-one', { label: 'one' })),
        withoutSecret(h.serviceBody('listed-two', { label: 'two' })),
      ],
    });
  });

  it('lists no secret and no secret location', async () => {
    const res = await h.admin('GET');
    expect(res.raw.includes(h.clientSecret)).toBe(false);
    expect(res.raw).not.toContain('client_secret');
    expect(res.raw).not.toContain('arn:aws:secretsmanager');
  });

  it('returns one service by name, without its secret', async () => {
    const res = await h.admin('GET', undefined, { name: 'listed-two' });
    expect(res.status).toBe(200);
    expect(res.body).toEqual(withoutSecret(h.serviceBody('listed-two', { label: 'two' })));
    expect(res.raw.includes(h.clientSecret)).toBe(false);
    expect(res.raw).not.toContain('arn:aws:secretsmanager');
  });

  it('answers 404 in the error shape for an unknown service', async () => {
    const res = await h.admin('GET', undefined, { name: 'nosuchservice' });
    expect(res.status).toBe(404);
    expectErrorShape(404, res.body);
    expect(res.body.error.message).toContain('nosuchservice');
  });

  it('answers 400 in the error shape for a malformed name', async () => {
    const res = await h.admin('GET', undefined, { name: 'Not A Name' });
    expect(res.status).toBe(400);
    expectErrorShape(400, res.body);
    expect(res.body.error.message).toMatch(/^name: /);
  });
});
