import { ArnFormat, Aws, Duration, Stack } from 'aws-cdk-lib';
import type * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import type { Construct } from 'constructs';
import {
  type BrokerMetric,
  CERTIFICATE_DAYS_TO_EXPIRY_METRIC,
  CERTIFICATE_EXPIRY_WARNING_DAYS,
  METRICS_NAMESPACE,
} from '../../lib/metrics';

/** The CloudWatch metric the handlers emit (EMF) each time Entra fails a token request. */
export const ENTRA_FAILURES_METRIC = {
  namespace: METRICS_NAMESPACE,
  metricName: 'EntraFailures',
  /** The `service` dimension: the Powertools service name the handlers run under. */
  service: 'token-broker',
} as const;

/**
 * The topic the alarms notify when no `alarmTopic` is given: encrypted with the broker key, HTTPS only, and open to
 * CloudWatch for this broker's alarms only. The key lets CloudWatch use it for this topic only (SNS names the
 * topic in the encryption context); the topic has a fixed name because the key cannot refer to it.
 */
export function createAlarmTopic(scope: Construct, namePrefix: string, key: kms.Key): sns.Topic {
  const topicName = `${namePrefix}-alarms`;
  const stack = Stack.of(scope);
  const topic = new sns.Topic(scope, 'AlarmTopic', {
    topicName,
    displayName: `Token Broker alarms (${namePrefix})`,
    masterKey: key,
    enforceSSL: true,
  });
  const alarmArns = stack.formatArn({
    service: 'cloudwatch',
    resource: 'alarm',
    resourceName: `${namePrefix}-*`,
    arnFormat: ArnFormat.COLON_RESOURCE_NAME,
  });
  topic.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'AllowBrokerAlarms',
      principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
      actions: ['sns:Publish'],
      resources: [topic.topicArn],
      conditions: {
        StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
        ArnLike: { 'aws:SourceArn': alarmArns },
      },
    }),
  );
  key.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'AllowCloudWatchAlarmsToPublishToAlarmTopic',
      principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
      actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
      resources: ['*'],
      conditions: {
        StringEquals: {
          'kms:EncryptionContext:aws:sns:topicArn': stack.formatArn({ service: 'sns', resource: topicName }),
        },
      },
    }),
  );
  return topic;
}

/** What the dashboard graphs and the alarms watch. */
export interface MonitoredBroker {
  /** Prefix of the dashboard and alarm names. */
  readonly namePrefix: string;
  readonly api: apigw.RestApi;
  readonly tokenFunction: lambda.Function;
  readonly adminFunction: lambda.Function;
  readonly delegatedFunction?: lambda.Function;
  readonly refreshFunction?: lambda.Function;
}

/** CloudWatch dashboard: API, functions, cache outcomes, Entra traffic and latency, leases, degradations. */
export function createDashboard(scope: Construct, targets: MonitoredBroker): cloudwatch.Dashboard {
  const period = Duration.minutes(1);
  const broker = (metricName: BrokerMetric | 'EntraLatency', statistic = 'Sum') =>
    new cloudwatch.Metric({
      namespace: METRICS_NAMESPACE,
      metricName,
      dimensionsMap: { service: ENTRA_FAILURES_METRIC.service },
      statistic,
      period,
    });
  const stage = targets.api.deploymentStage;
  const functions = [
    targets.tokenFunction,
    targets.adminFunction,
    ...(targets.refreshFunction ? [targets.refreshFunction] : []),
  ];
  const graph = (title: string, left: cloudwatch.IMetric[], width = 8) =>
    new cloudwatch.GraphWidget({ title, left, width, height: 6 });
  const dashboard = new cloudwatch.Dashboard(scope, 'Dashboard', { dashboardName: targets.namePrefix });
  dashboard.addWidgets(
    graph('API requests and errors', [
      stage.metricCount({ period }),
      stage.metricClientError({ period }),
      stage.metricServerError({ period }),
    ]),
    graph('API latency (p50, p99)', [
      stage.metricLatency({ period, statistic: 'p50' }),
      stage.metricLatency({ period, statistic: 'p99' }),
    ]),
    graph('Cache outcomes', [
      broker('CacheHit'),
      broker('CacheMiss'),
      broker('CacheRefresh'),
      broker('RefreshAhead'),
    ]),
  );
  dashboard.addWidgets(
    graph('Entra requests, failures, retries', [
      broker('EntraRequests'),
      broker('EntraFailures'),
      broker('EntraRetries'),
      broker('RefreshAheadFailures'),
    ]),
    graph('Entra latency (p50, p99)', [broker('EntraLatency', 'p50'), broker('EntraLatency', 'p99')]),
    graph('Leases, cool-downs, degraded store', [
      broker('LeaseWaits'),
      broker('LeaseWaitTimeouts'),
      broker('CooldownRefusals'),
      broker('StoreDegraded'),
    ]),
  );
  dashboard.addWidgets(
    graph(
      'Function errors and throttles',
      functions.flatMap((fn) => [fn.metricErrors({ period }), fn.metricThrottles({ period })]),
      12,
    ),
    graph(
      'Function duration (p99)',
      functions.map((fn) => fn.metricDuration({ period, statistic: 'p99' })),
      12,
    ),
  );
  return dashboard;
}

/**
 * Alarms on API 5xx rate, function errors and throttles, Entra failures and (with the scheduled refresh, which
 * measures it) certificates near expiry; alarm and OK notifications go to `topic`.
 */
export function createAlarms(
  scope: Construct,
  targets: MonitoredBroker,
  topic: sns.ITopic,
): cloudwatch.Alarm[] {
  const alarms: cloudwatch.Alarm[] = [];
  const period = Duration.minutes(5);
  const stage = targets.api.deploymentStage;
  const add = (id: string, name: string, props: cloudwatch.AlarmProps): void => {
    const alarm = new cloudwatch.Alarm(scope, id, {
      alarmName: `${targets.namePrefix}-${name}`,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      ...props,
    });
    alarm.addAlarmAction(new cloudwatchActions.SnsAction(topic));
    alarm.addOkAction(new cloudwatchActions.SnsAction(topic));
    alarms.push(alarm);
  };

  add('Api5xxRateAlarm', 'api-5xx-rate', {
    alarmDescription: 'More than 5% of API requests failed with a 5xx (at least 10 requests in 5 minutes).',
    metric: new cloudwatch.MathExpression({
      expression: 'IF(requests >= 10, 100 * errors / requests, 0)',
      usingMetrics: {
        requests: stage.metricCount({ period, statistic: 'Sum' }),
        errors: stage.metricServerError({ period, statistic: 'Sum' }),
      },
      period,
      label: '5xx responses (%)',
    }),
    threshold: 5,
    comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
    evaluationPeriods: 1,
  });
  for (const [id, fn] of [
    ['Token', targets.tokenFunction],
    ['Admin', targets.adminFunction],
    ...(targets.delegatedFunction ? ([['Delegated', targets.delegatedFunction]] as const) : []),
  ] as const) {
    const name = id.toLowerCase();
    add(`${id}FunctionErrorsAlarm`, `${name}-function-errors`, {
      alarmDescription: `The ${name} function failed (unhandled error or timeout).`,
      metric: fn.metricErrors({ period, statistic: 'Sum' }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
    });
    add(`${id}FunctionThrottlesAlarm`, `${name}-function-throttles`, {
      alarmDescription: `Invocations of the ${name} function were throttled.`,
      metric: fn.metricThrottles({ period, statistic: 'Sum' }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
    });
  }
  if (targets.refreshFunction) {
    // A failed run is retried by the next one; an error means every service failed to be listed.
    add('RefreshFunctionErrorsAlarm', 'refresh-function-errors', {
      alarmDescription: 'The scheduled refresh function failed (unhandled error or timeout).',
      metric: targets.refreshFunction.metricErrors({ period, statistic: 'Sum' }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
    });
  }
  if (targets.refreshFunction) {
    // The scheduled refresh emits the gauge, one data point per service with a certificate; the minimum over an
    // hour is the certificate closest to expiry. No certificates, no data: not breaching.
    add('CertificateExpiryAlarm', 'certificate-expiry', {
      alarmDescription:
        `A service certificate expires in less than ${CERTIFICATE_EXPIRY_WARNING_DAYS} days: issue or upload the ` +
        'next one, register it on the app registration, then make it the active certificate.',
      metric: new cloudwatch.Metric({
        namespace: METRICS_NAMESPACE,
        metricName: CERTIFICATE_DAYS_TO_EXPIRY_METRIC,
        dimensionsMap: { service: ENTRA_FAILURES_METRIC.service },
        statistic: 'Minimum',
        period: Duration.hours(1),
      }),
      threshold: CERTIFICATE_EXPIRY_WARNING_DAYS,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: 1,
    });
  }
  add('EntraFailuresAlarm', 'entra-failures', {
    alarmDescription: 'Entra failed at least 5 token requests in 5 minutes (errors, throttling, timeouts).',
    metric: new cloudwatch.Metric({
      namespace: ENTRA_FAILURES_METRIC.namespace,
      metricName: ENTRA_FAILURES_METRIC.metricName,
      dimensionsMap: { service: ENTRA_FAILURES_METRIC.service },
      statistic: 'Sum',
      period,
    }),
    threshold: 5,
    comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    evaluationPeriods: 1,
  });
  return alarms;
}
