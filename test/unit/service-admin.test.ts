import { AuthorityPolicy } from '../../lib/authority';
import { ConflictError, NotFoundError, PreconditionFailedError, ValidationError } from '../../lib/errors';
import { SecretReferencePolicy } from '../../lib/secret-reference';
import { ServiceAdministration } from '../../lib/service-admin';
import { ManualClock } from '../fixtures/clock';
import {
  InMemorySecretStore,
  InMemoryServiceRegistry,
  InMemoryTokenCache,
  silentLogger,
} from '../fixtures/in-memory';

/** The administration policies (secrets kept with their services, versions, rollback) over in-memory stores. */
const PREFIX = 'token-broker/unit/services/';
const GRAPH = 'https://graph.microsoft.com/.default';
/** A secret the administrator brings (outside the prefix, allow-listed by the operator). */
const BROUGHT = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:team/graph-AbCdEf';

function setup() {
  const clock = new ManualClock();
  const registry = new InMemoryServiceRegistry();
  const secrets = new InMemorySecretStore();
  secrets.put(BROUGHT, 'brought-secret');
  const cache = new InMemoryTokenCache(clock.now);
  let id = 0;
  const admin = new ServiceAdministration({
    registry,
    secrets,
    cache,
    authority: new AuthorityPolicy(''),
    secretReferences: new SecretReferencePolicy(PREFIX, [BROUGHT]),
    logger: silentLogger(),
    secretPrefix: PREFIX,
    now: clock.now,
    newId: () => `v${++id}`,
  });
  /** Caches a token for the service's current version, as the token flow would. */
  const cacheToken = async (name: string) => {
    const version = registry.services.get(name)?.version as string;
    await cache.put(
      { service: name, version, scope: GRAPH },
      {
        accessToken: 't',
        scope: GRAPH,
        acquiredAt: clock.now(),
        expiresAt: clock.now() + 3600_000,
        refreshAt: 0,
      },
    );
    return { service: name, version, scope: GRAPH };
  };
  /** The managed secrets (under the prefix) that are not deleted. */
  const live = () =>
    [...secrets.secrets.entries()]
      .filter(([arn, s]) => arn.includes(PREFIX) && !s.deleted)
      .map(([arn]) => arn);
  return { clock, registry, secrets, cache, admin, cacheToken, live };
}

const body = (name: string, extra: Record<string, unknown> = {}) => ({
  name,
  config: {
    client_id: '11111111-1111-1111-1111-111111111111',
    client_secret: `secret-of-${name}`,
    tenant_id: '22222222-2222-2222-2222-222222222222',
  },
  ...extra,
});

describe('ServiceAdministration', () => {
  it('creates a service with its own managed secret, named and tagged for it, and never returns the secret', async () => {
    const { admin, registry, secrets } = setup();
    const result = await admin.create(body('graph'));
    const record = registry.services.get('graph');
    expect(result).toMatchObject({ kind: 'single', created: { version: record?.version } });
    expect(record?.secret?.arn).toContain(`${PREFIX}graph/${record?.version}`);
    expect(secrets.secrets.get(record?.secret?.arn as string)?.tags).toEqual({
      'token-broker:service': 'graph',
    });
    expect(JSON.stringify(result)).not.toContain('secret-of-graph');
  });

  it('refuses a name that is taken and leaves no secret behind', async () => {
    const { admin, live } = setup();
    await admin.create(body('graph'));
    const before = live();
    await expect(admin.create(body('graph'))).rejects.toBeInstanceOf(ConflictError);
    expect(live()).toEqual(before);
  });

  it('removes what a batch created when a later service cannot be written (all or nothing)', async () => {
    // Prepare: the second service's write fails in the store
    const { admin, registry, live } = setup();
    const create = registry.create.bind(registry);
    registry.create = async (record) => {
      if (record.name === 'second') throw new Error('store refused the write');
      return create(record);
    };
    // Act
    const outcome = admin.create({ resource: [body('first'), body('second')] });
    // Assess
    await expect(outcome).rejects.toThrow('store refused the write');
    expect(registry.services.size).toBe(0);
    expect(live()).toEqual([]);
  });

  it('gives every update a new version and clears the old version’s tokens', async () => {
    const { admin, cache, cacheToken, registry } = setup();
    await admin.create(body('graph'));
    const oldKey = await cacheToken('graph');
    const updated = await admin.update('graph', { label: 'Graph' });
    expect(updated.version).not.toBe(oldKey.version);
    expect(updated.version).toBe(registry.services.get('graph')?.version);
    expect(await cache.get(oldKey)).toBeUndefined();
  });

  it('refuses an update whose If-Match names an older version (412), and a rename (400)', async () => {
    const { admin } = setup();
    await admin.create(body('graph'));
    await admin.update('graph', { label: 'Graph' });
    await expect(admin.update('graph', { label: 'x' }, 'v1')).rejects.toBeInstanceOf(PreconditionFailedError);
    await expect(admin.update('graph', { name: 'other' })).rejects.toBeInstanceOf(ValidationError);
  });

  it('rotates a managed secret: the new one is stored, the old one can be restored for 7 days', async () => {
    const { admin, registry, secrets } = setup();
    await admin.create(body('graph'));
    const oldArn = registry.services.get('graph')?.secret?.arn as string;
    await admin.update('graph', { config: { client_secret: 'rotated' } });
    const newArn = registry.services.get('graph')?.secret?.arn as string;
    expect(newArn).not.toBe(oldArn);
    expect(secrets.secrets.get(oldArn)?.deleted).toBe(true);
    expect(secrets.secrets.get(newArn)?.value).toContain('rotated');
  });

  it('deletes the service first, then its tokens, then its secret (restorable)', async () => {
    const { admin, registry, cache, cacheToken, secrets } = setup();
    await admin.create(body('graph'));
    const key = await cacheToken('graph');
    const arn = registry.services.get('graph')?.secret?.arn as string;
    await admin.delete('graph');
    expect(registry.services.has('graph')).toBe(false);
    expect(await cache.get(key)).toBeUndefined();
    expect(secrets.secrets.get(arn)?.deleted).toBe(true);
    await expect(admin.delete('graph')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('declares a service: created when missing, unchanged when equal, updated when it differs', async () => {
    const { admin, registry } = setup();
    const { client_secret: _value, ...config } = { ...body('graph').config, client_secret_arn: BROUGHT };
    expect(await admin.declare({ name: 'graph', config })).toBe('created');
    const created = registry.services.get('graph')?.version;
    expect(await admin.declare({ name: 'graph', config })).toBe('unchanged');
    expect(registry.services.get('graph')?.version).toBe(created);
    expect(await admin.declare({ name: 'graph', label: 'Graph', config })).toBe('updated');
    expect(registry.services.get('graph')?.label).toBe('Graph');
    expect(registry.services.get('graph')?.version).not.toBe(created);
  });

  it('never deletes a secret the administrator brought', async () => {
    const { admin, secrets } = setup();
    const { client_secret: _value, ...config } = { ...body('graph').config, client_secret_arn: BROUGHT };
    await admin.create({ name: 'graph', config });
    await admin.delete('graph');
    expect(secrets.secrets.get(BROUGHT)?.deleted).toBe(false);
  });
});
