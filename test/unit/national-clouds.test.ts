import { AuthorityPolicy, tokenEndpointFor } from '../../lib/authority';
import { ValidationError } from '../../lib/errors';
import { ServiceInputSchema, splitInput } from '../../lib/service-config';
import { parseOrThrow } from '../../lib/validation';

const TENANT_ID = '3c1d7e9a-5b2f-4a68-9d0e-7f1a2b3c4d5e';

function configOf(config: Record<string, unknown>) {
  const input = parseOrThrow(ServiceInputSchema, {
    name: 'graph',
    config: {
      client_id: '9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b',
      client_secret: 's',
      tenant_id: TENANT_ID,
      ...config,
    },
  });
  return splitInput(input).config;
}

describe('config.cloud', () => {
  it.each([
    ['global', 'https://login.microsoftonline.com'],
    ['usgov', 'https://login.microsoftonline.us'],
    ['china', 'https://login.chinacloudapi.cn'],
  ] as const)('sends tokens requests of a %s service to %s by default', (cloud, host) => {
    expect(tokenEndpointFor(undefined, TENANT_ID, cloud).href).toBe(`${host}/${TENANT_ID}/oauth2/v2.0/token`);
  });

  it.each([
    [undefined, 'https://graph.microsoft.com/.default'],
    ['global', 'https://graph.microsoft.com/.default'],
    ['usgov', 'https://graph.microsoft.us/.default'],
    ['china', 'https://microsoftgraph.chinacloudapi.cn/.default'],
  ])('gives a %s service without scopes that cloud’s Graph (%s)', (cloud, scope) => {
    expect(configOf(cloud === undefined ? {} : { cloud }).scopes).toBe(scope);
  });

  it('keeps the scopes a service names, whatever its cloud', () => {
    expect(configOf({ cloud: 'usgov', scopes: 'api://x/.default' }).scopes).toBe('api://x/.default');
  });

  it('lets authority_url override the cloud’s authority', () => {
    const config = configOf({
      cloud: 'china',
      authority_url: 'https://login.partner.microsoftonline.cn/{tenant_id}',
    });
    const endpoint = tokenEndpointFor(config.authority_url, config.tenant_id, config.cloud);
    expect(endpoint.host).toBe('login.partner.microsoftonline.cn');
    expect(() => new AuthorityPolicy().assertAllowed(endpoint)).not.toThrow();
  });

  it('leaves the cloud out of a global service’s stored config when none was sent (DreamFactory bodies unchanged)', () => {
    expect(configOf({})).not.toHaveProperty('cloud');
  });

  it('refuses an unknown cloud with a 400 naming the field and the choices', () => {
    expect(() => configOf({ cloud: 'germany' })).toThrow(ValidationError);
    expect(() => configOf({ cloud: 'germany' })).toThrow(
      /config\.cloud: must be "global", "usgov" or "china"/,
    );
  });
});
