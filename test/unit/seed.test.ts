import { ServiceInputSchema } from '../../lib/service-config';
import { seedServiceFromEnvironment } from '../../local/seed';

/** The DreamFactory seed's `.env` variables, turned into the one service local mode declares at start. */
describe('seedServiceFromEnvironment', () => {
  const seed = {
    AZURE_AD_CLIENT_ID: '0f0e0d0c-0b0a-4909-8807-060504030201',
    AZURE_AD_CLIENT_SECRET: 'placeholder-value',
    AZURE_AD_TENANT_ID: 'contoso.onmicrosoft.com',
  };

  it('maps AZURE_AD_* to a client credentials service named azure_ad_api', () => {
    expect(seedServiceFromEnvironment(seed)).toEqual({
      name: 'azure_ad_api',
      label: 'Azure AD API Access',
      description: 'Declared from AZURE_AD_* environment variables',
      type: 'oauth_azure_ad',
      is_active: true,
      config: {
        client_id: seed.AZURE_AD_CLIENT_ID,
        client_secret: seed.AZURE_AD_CLIENT_SECRET,
        tenant_id: seed.AZURE_AD_TENANT_ID,
        grant_type: 'client_credentials',
        is_client_credentials: true,
      },
    });
  });

  it('yields a body the create schema accepts, with the default Graph scope', () => {
    const parsed = ServiceInputSchema.parse(seedServiceFromEnvironment(seed));
    expect(parsed.config.scopes).toBe('https://graph.microsoft.com/.default');
  });

  it('names the service after AZURE_AD_SERVICE_NAME when set', () => {
    expect(seedServiceFromEnvironment({ ...seed, AZURE_AD_SERVICE_NAME: 'graph' })?.name).toBe('graph');
  });

  it('uses the default name when AZURE_AD_SERVICE_NAME is empty', () => {
    expect(seedServiceFromEnvironment({ ...seed, AZURE_AD_SERVICE_NAME: '' })?.name).toBe('azure_ad_api');
  });

  it('takes the scopes from AZURE_AD_SCOPES', () => {
    const body = seedServiceFromEnvironment({ ...seed, AZURE_AD_SCOPES: 'https://vault.azure.net/.default' });
    expect(body?.config).toMatchObject({ scopes: 'https://vault.azure.net/.default' });
  });

  it('takes the authority from AZURE_AD_AUTHORITY_URL', () => {
    const body = seedServiceFromEnvironment({
      ...seed,
      AZURE_AD_AUTHORITY_URL: 'http://127.0.0.1:8443/{tenant_id}',
    });
    expect(body?.config).toMatchObject({ authority_url: 'http://127.0.0.1:8443/{tenant_id}' });
  });

  it('leaves scopes and authority out when their variables are not set', () => {
    const config = seedServiceFromEnvironment(seed)?.config as Record<string, unknown>;
    expect(config).not.toHaveProperty('scopes');
    expect(config).not.toHaveProperty('authority_url');
  });

  it('returns undefined when no AZURE_AD_* variable is set', () => {
    expect(seedServiceFromEnvironment({ PATH: '/usr/bin', HOME: '/root' })).toBeUndefined();
  });

  it('returns undefined when only the optional variables are set', () => {
    expect(
      seedServiceFromEnvironment({
        AZURE_AD_SERVICE_NAME: 'graph',
        AZURE_AD_SCOPES: 'https://graph.microsoft.com/.default',
      }),
    ).toBeUndefined();
  });

  it('returns a body for an incomplete seed, which the create schema then refuses naming the missing field', () => {
    const body = seedServiceFromEnvironment({ AZURE_AD_CLIENT_ID: seed.AZURE_AD_CLIENT_ID });
    expect(body).toBeDefined();
    const result = ServiceInputSchema.safeParse(body);
    expect(result.success).toBe(false);
    expect(result.error?.issues.map((i) => i.path.join('.'))).toContain('config.tenant_id');
  });
});
