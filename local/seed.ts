/**
 * The DreamFactory seed's `.env` variables, declaring one service at start of local mode:
 * AZURE_AD_CLIENT_ID, AZURE_AD_CLIENT_SECRET, AZURE_AD_TENANT_ID, AZURE_AD_SCOPES, AZURE_AD_SERVICE_NAME
 * (default `azure_ad_api`) and, for a non-default authority such as a local Entra emulator, AZURE_AD_AUTHORITY_URL.
 */
export function seedServiceFromEnvironment(env: NodeJS.ProcessEnv): Record<string, unknown> | undefined {
  if (!env.AZURE_AD_CLIENT_ID && !env.AZURE_AD_CLIENT_SECRET && !env.AZURE_AD_TENANT_ID) return undefined;
  return {
    name: env.AZURE_AD_SERVICE_NAME || 'azure_ad_api',
    label: 'Azure AD API Access',
    description: 'Declared from AZURE_AD_* environment variables',
    type: 'oauth_azure_ad',
    is_active: true,
    config: {
      client_id: env.AZURE_AD_CLIENT_ID,
      client_secret: env.AZURE_AD_CLIENT_SECRET,
      tenant_id: env.AZURE_AD_TENANT_ID,
      grant_type: 'client_credentials',
      is_client_credentials: true,
      ...(env.AZURE_AD_SCOPES ? { scopes: env.AZURE_AD_SCOPES } : {}),
      ...(env.AZURE_AD_AUTHORITY_URL ? { authority_url: env.AZURE_AD_AUTHORITY_URL } : {}),
    },
  };
}
