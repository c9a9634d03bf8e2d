import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { AuthorityPolicy } from '../lib/authority';
import { ClientCredentialsFlow } from '../lib/client-credentials-flow';
import { DynamoDbCreateJournal } from '../lib/create-journal';
import { DEFAULT_FEDERATION_AUDIENCE } from '../lib/credentials/federated';
import { KmsSigningKeys } from '../lib/credentials/kms-signing-keys';
import { StsWebIdentityTokenSource } from '../lib/credentials/sts-web-identity';
import { EntraTokenClient } from '../lib/entra-token-client';
import { type IssueKmsCertificate, KmsCertificates } from '../lib/kms-certificates';
import { CERTIFICATE_DAYS_TO_EXPIRY_METRIC, METRICS_NAMESPACE, type MetricsSink } from '../lib/metrics';
import { DynamoDbRefreshCoordinator } from '../lib/refresh-coordinator';
import { ScheduledRefresh } from '../lib/scheduled-refresh';
import { SecretReferencePolicy } from '../lib/secret-reference';
import { SecretsManagerSecretStore } from '../lib/secret-store';
import { ServiceAdministration } from '../lib/service-admin';
import { DynamoDbServiceRegistry } from '../lib/service-registry';
import { DynamoDbTokenCache } from '../lib/token-cache';
import { KmsEnvelopeEncryption } from '../lib/token-encryption';
import { TokenMemory } from '../lib/token-memory';
import { createAwsClients } from './aws-clients';
import { type BrokerEnvironment, readEnvironment } from './config';

/**
 * Everything a handler needs, built once per Lambda container (cold start) from the environment. The AWS clients
 * (all from functions/aws-clients.ts, so every AWS call has a bounded time) read `AWS_ENDPOINT_URL_DYNAMODB` /
 * `_SECRETS_MANAGER` / `_KMS`, which is how local mode and the tests point these same production adapters at
 * local servers. No Powertools Tracer here: the token function does without it (README, "Performance"); the
 * handlers that trace build their own (functions/tracing.ts).
 */
export interface Runtime {
  env: BrokerEnvironment;
  logger: Logger;
  /** Powertools Metrics; handlers flush it with its middy middleware. */
  metrics: Metrics;
  flow: ClientCredentialsFlow;
  /** The token function's way to the flow: a per-instance memory tier in front of it (lib/token-memory.ts). */
  tokens: TokenMemory;
  admin: ServiceAdministration;
  /** The scheduled refresh over {@link flow}, for the given windows (functions/refresh.ts). */
  scheduledRefresh(windows: { horizonMs: number; usedWithinMs: number }): ScheduledRefresh;
  /** What an app registration must trust for federated services; undefined where federation is not set up. */
  federation?: { issuer: string; subject: string; audience: string };
}

/** What only some functions bring to the runtime. */
export interface RuntimeOptions {
  /**
   * Loads the certificate issuer for kms_certificate services (lib/credentials/kms-certificate-issuer.ts, which
   * brings @peculiar/x509). Only the admin function passes it, as a dynamic import: the other bundles do not even
   * contain it. Without it, `credential_type: kms_certificate` is refused at creation.
   */
  certificateIssuer?: () => Promise<IssueKmsCertificate>;
}

/** Builds the runtime from `process.env`; throws naming every missing or malformed variable. */
export function createRuntime(options: RuntimeOptions = {}): Runtime {
  const env = readEnvironment();
  const logger = new Logger({ serviceName: env.POWERTOOLS_SERVICE_NAME });
  // Short, enforced timeouts: when DynamoDB hangs or refuses, the flow degrades to memory instead of holding callers.
  const clients = createAwsClients();
  const { dynamodb } = clients;
  const powertoolsMetrics = new Metrics({
    namespace: METRICS_NAMESPACE,
    serviceName: env.POWERTOOLS_SERVICE_NAME,
  });
  const metrics: MetricsSink = {
    count: (name, value = 1) => powertoolsMetrics.addMetric(name, MetricUnit.Count, value),
    milliseconds: (name, value) => powertoolsMetrics.addMetric(name, MetricUnit.Milliseconds, value),
  };
  const { secretsManager } = clients;
  const registry = new DynamoDbServiceRegistry({
    client: dynamodb,
    tableName: env.TOKEN_BROKER_SERVICES_TABLE,
  });
  // kms_certificate services: kms:Sign for their client assertions (and, in the admin function, CreateKey).
  const signingKeys = new KmsSigningKeys(clients.kmsSigning, { brokerId: env.TOKEN_BROKER_INSTANCE_ID });
  const sealer = new KmsEnvelopeEncryption({
    client: clients.kms,
    keyId: env.TOKEN_BROKER_TOKEN_KEY_ID,
  });
  const cache = new DynamoDbTokenCache({
    client: dynamodb,
    tableName: env.TOKEN_BROKER_TOKEN_CACHE_TABLE,
    sealer,
  });
  const secrets = new SecretsManagerSecretStore({
    client: secretsManager,
    kmsKeyId: env.TOKEN_BROKER_SECRET_KMS_KEY_ID,
  });
  const authority = new AuthorityPolicy(env.TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS);
  const entra = new EntraTokenClient({
    timeoutMs: env.TOKEN_BROKER_ENTRA_TIMEOUT_MS,
    httpsProxy: env.HTTPS_PROXY,
  });
  const federation =
    env.TOKEN_BROKER_FEDERATION_ISSUER && env.TOKEN_BROKER_FEDERATION_SUBJECT
      ? {
          issuer: env.TOKEN_BROKER_FEDERATION_ISSUER,
          subject: env.TOKEN_BROKER_FEDERATION_SUBJECT,
          audience: DEFAULT_FEDERATION_AUDIENCE,
        }
      : undefined;
  // One source per container, built with the runtime (the small STS client costs nothing at cold start).
  const webIdentity = new StsWebIdentityTokenSource(clients.sts);
  const flow = new ClientCredentialsFlow({
    registry,
    cache,
    coordinator: new DynamoDbRefreshCoordinator({
      client: dynamodb,
      tableName: env.TOKEN_BROKER_TOKEN_CACHE_TABLE,
    }),
    secrets,
    entra,
    authority,
    // STS is asked only when a federated service needs a token; its client (functions/aws-json.ts) costs nothing
    // at cold start, so nothing is loaded lazily here. KMS signs for kms_certificate services.
    credentialSources: {
      signingKeys,
      ...(federation ? { webIdentity: async () => webIdentity } : {}),
    },
    logger,
    metrics,
    settings: {
      refreshFraction: env.TOKEN_BROKER_REFRESH_FRACTION,
      retryBudgetMs: env.TOKEN_BROKER_ENTRA_RETRY_BUDGET_MS,
      cooldownMs: env.TOKEN_BROKER_COOLDOWN_MS,
    },
  });
  const runtime: Omit<Runtime, 'tokens'> = {
    env,
    logger,
    metrics: powertoolsMetrics,
    federation,
    flow,
    scheduledRefresh: (windows) =>
      new ScheduledRefresh({
        flow,
        registry,
        cache,
        logger,
        retryBudgetMs: env.TOKEN_BROKER_ENTRA_RETRY_BUDGET_MS,
        // The gauge the certificate-expiry alarm watches (infra/token-broker/monitoring.ts).
        certificates: {
          certificateDaysToExpiry: (days) =>
            powertoolsMetrics.addMetric(CERTIFICATE_DAYS_TO_EXPIRY_METRIC, MetricUnit.NoUnit, days),
        },
        ...windows,
      }),
    admin: new ServiceAdministration({
      registry,
      secrets,
      cache,
      authority,
      logger,
      secretPrefix: env.TOKEN_BROKER_SECRET_PREFIX,
      federationEnabled: federation !== undefined,
      federationAudiences: env.TOKEN_BROKER_FEDERATION_AUDIENCES.split(',')
        .map((audience) => audience.trim())
        .filter((audience) => audience.length > 0),
      ...(options.certificateIssuer
        ? {
            kms: new KmsCertificates({
              keys: signingKeys,
              issuer: options.certificateIssuer,
              logger,
              now: Date.now,
              brokerId: env.TOKEN_BROKER_INSTANCE_ID,
            }),
          }
        : {}),
      journal: new DynamoDbCreateJournal({ client: dynamodb, tableName: env.TOKEN_BROKER_SERVICES_TABLE }),
      secretReferences: new SecretReferencePolicy(
        env.TOKEN_BROKER_SECRET_PREFIX,
        env.TOKEN_BROKER_ALLOWED_SECRET_ARNS,
      ),
    }),
  };
  return {
    ...runtime,
    tokens: new TokenMemory({ source: runtime.flow, boundMs: env.TOKEN_BROKER_MEMORY_BOUND_MS, metrics }),
  };
}
