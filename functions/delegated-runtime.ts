import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Tracer } from '@aws-lambda-powertools/tracer';
import { AuthorityPolicy } from '../lib/authority';
import { ConsentFlow } from '../lib/authorization-code/consent';
import { DynamoDbConsentStateStore } from '../lib/authorization-code/consent-states';
import { EntraDelegatedClient } from '../lib/authorization-code/entra-delegated-client';
import { KmsUserSecretSealer } from '../lib/authorization-code/sealer';
import { DynamoDbUserGrantStore } from '../lib/authorization-code/user-grants';
import { UserTokenFlow } from '../lib/authorization-code/user-token-flow';
import { KmsSigningKeys } from '../lib/credentials/kms-signing-keys';
import { EntraRetryPolicy } from '../lib/entra-retry-policy';
import { METRICS_NAMESPACE, type MetricsSink } from '../lib/metrics';
import { DynamoDbRefreshCoordinator } from '../lib/refresh-coordinator';
import { SecretCache } from '../lib/secret-cache';
import { SecretsManagerSecretStore } from '../lib/secret-store';
import { DynamoDbServiceRegistry } from '../lib/service-registry';
import { DynamoDbTokenCache } from '../lib/token-cache';
import { KmsEnvelopeEncryption } from '../lib/token-encryption';
import { createAwsClients } from './aws-clients';
import { type BrokerEnvironment, readEnvironment } from './config';
import { createTracer } from './tracing';

/** What the delegated handler needs, built once per container. */
export interface DelegatedRuntime {
  env: BrokerEnvironment & { TOKEN_BROKER_USER_GRANTS_TABLE: string };
  logger: Logger;
  metrics: Metrics;
  tracer: Tracer;
  consent: ConsentFlow;
  userTokens: UserTokenFlow;
}

/** Builds the runtime of the authorization code function from `process.env`; throws naming what is missing. */
export function createDelegatedRuntime(): DelegatedRuntime {
  const common = readEnvironment();
  const grantsTable = common.TOKEN_BROKER_USER_GRANTS_TABLE;
  if (grantsTable === undefined) {
    throw new Error(
      'Token Broker is misconfigured: TOKEN_BROKER_USER_GRANTS_TABLE is required by the delegated function',
    );
  }
  const env = { ...common, TOKEN_BROKER_USER_GRANTS_TABLE: grantsTable };
  const serviceName = process.env.POWERTOOLS_SERVICE_NAME ?? 'token-broker';
  const logger = new Logger({ serviceName });
  const tracer = createTracer();
  const powertoolsMetrics = new Metrics({ namespace: METRICS_NAMESPACE, serviceName });
  const metrics: MetricsSink = {
    count: (name, value = 1) => powertoolsMetrics.addMetric(name, MetricUnit.Count, value),
    milliseconds: (name, value) => powertoolsMetrics.addMetric(name, MetricUnit.Milliseconds, value),
  };
  // The same bounded clients as the token and admin functions: no AWS call waits forever.
  const clients = createAwsClients();
  const { dynamodb, kms } = clients;
  const registry = new DynamoDbServiceRegistry({
    client: dynamodb,
    tableName: env.TOKEN_BROKER_SERVICES_TABLE,
  });
  const grants = new DynamoDbUserGrantStore({
    client: dynamodb,
    tableName: env.TOKEN_BROKER_USER_GRANTS_TABLE,
  });
  const sealer = new KmsUserSecretSealer({ client: kms, keyId: env.TOKEN_BROKER_TOKEN_KEY_ID });
  const authority = new AuthorityPolicy(env.TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS);
  const coordinator = new DynamoDbRefreshCoordinator({
    client: dynamodb,
    tableName: env.TOKEN_BROKER_TOKEN_CACHE_TABLE,
  });
  const consent = new ConsentFlow({
    registry,
    states: new DynamoDbConsentStateStore({
      client: dynamodb,
      tableName: env.TOKEN_BROKER_USER_GRANTS_TABLE,
    }),
    grants,
    sealer,
    entra: new EntraDelegatedClient({ authority, timeoutMs: env.TOKEN_BROKER_ENTRA_TIMEOUT_MS }),
    authority,
    credentials: new SecretCache({
      secrets: new SecretsManagerSecretStore({
        client: clients.secretsManager,
        kmsKeyId: env.TOKEN_BROKER_SECRET_KMS_KEY_ID,
      }),
      ttlMs: 5 * 60_000,
    }),
    // kms_certificate services: kms:Sign for the client assertions of code and refresh-token redemptions.
    credentialSources: {
      signingKeys: new KmsSigningKeys(clients.kmsSigning, { brokerId: env.TOKEN_BROKER_INSTANCE_ID }),
    },
    logger,
  });
  const userTokens = new UserTokenFlow({
    registry,
    grants,
    cache: new DynamoDbTokenCache({
      client: dynamodb,
      tableName: env.TOKEN_BROKER_TOKEN_CACHE_TABLE,
      sealer: new KmsEnvelopeEncryption({ client: kms, keyId: env.TOKEN_BROKER_TOKEN_KEY_ID }),
    }),
    coordinator,
    sealer,
    consent,
    retries: new EntraRetryPolicy({
      coordinator,
      logger,
      metrics,
      settings: {
        retryBudgetMs: env.TOKEN_BROKER_ENTRA_RETRY_BUDGET_MS,
        cooldownMs: env.TOKEN_BROKER_COOLDOWN_MS,
      },
      now: Date.now,
      sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
      random: Math.random,
    }),
    logger,
    settings: { refreshFraction: env.TOKEN_BROKER_REFRESH_FRACTION },
  });
  return { env, logger, metrics: powertoolsMetrics, tracer, consent, userTokens };
}
