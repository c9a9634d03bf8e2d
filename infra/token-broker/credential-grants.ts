/**
 * IAM for the credentials without a shared secret (issue 11): the KMS signing keys of `kms_certificate` services
 * and the STS web identity tokens of `federated` services. Every grant is bound by conditions, because neither the
 * keys (created at run time) nor GetWebIdentityToken (no resource type) can be named by ARN:
 *
 * - a key is this broker's when its {@link BROKER_INSTANCE_TAG} tag carries the broker's instance id (the
 *   construct's `namePrefix`, unique in an account and region because the broker's KMS alias is named after it);
 * - a web identity token is only for the audiences Entra accepts, RS256, and at most 5 minutes long.
 */
import { Stack, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import { DEFAULT_FEDERATION_AUDIENCE, WEB_IDENTITY_TOKEN_SECONDS } from '../../lib/credentials/federated';
import { KMS_KEY_SPECS } from '../../lib/credentials/kms-credential-config';
import { BROKER_INSTANCE_TAG, BROKER_KEY_TAG } from '../../lib/credentials/kms-tags';
import type { BrokerFunctions } from './functions';
import { asCdkNagRenders } from './permissions';
import type { ResolvedBrokerProps } from './props';

/** The variables the functions read federation from (functions/config.ts); federation is on when both are set. */
export const FEDERATION_ISSUER_VARIABLE = 'TOKEN_BROKER_FEDERATION_ISSUER';
export const FEDERATION_SUBJECT_VARIABLE = 'TOKEN_BROKER_FEDERATION_SUBJECT';
export const FEDERATION_AUDIENCES_VARIABLE = 'TOKEN_BROKER_FEDERATION_AUDIENCES';

/** kms:Sign for client assertions (PS256): the token-fetching functions. */
export const ASSERTION_SIGNING_ALGORITHM = 'RSASSA_PSS_SHA_256';
/** kms:Sign for the self-signed certificates (sha256WithRSAEncryption): the admin function. */
export const CERTIFICATE_SIGNING_ALGORITHM = 'RSASSA_PKCS1_V1_5_SHA_256';
/** The signing algorithm Entra accepts for federated assertions. */
export const WEB_IDENTITY_SIGNING_ALGORITHM = 'RS256';

/** Every KMS key of the stack's account and region: narrowed to this broker's by the tag conditions. */
export function accountKeysArn(scope: Construct): string {
  return Stack.of(scope).formatArn({ service: 'kms', resource: 'key', resourceName: '*' });
}

/**
 * Grants each function its part of the signing keys and, with `federation`, of the web identity tokens, and tells
 * the token, refresh and admin functions the issuer and subject to answer and use. Returns the subject: the ARN of
 * the role the token and refresh functions share when federation is on (functions.ts).
 */
export function grantCredentials(
  functions: BrokerFunctions,
  props: ResolvedBrokerProps,
): { federationSubject?: string } {
  const { tokenFunction, refreshFunction, adminFunction, delegatedFunction } = functions;
  const brokerId = props.namePrefix;
  grantSigningKeyAdministration(adminFunction, brokerId);
  const fetching = refreshFunction ? [tokenFunction, refreshFunction] : [tokenFunction];
  // One grant per role: with federation, the refresh function runs as the token function's role.
  const byRole = new Map(fetching.map((fn) => [fn.role, fn]));
  for (const fn of byRole.values()) grantAssertionSigning(fn, brokerId);
  // The authorization code flow authenticates its code and refresh-token redemptions the same way.
  grantAssertionSigning(delegatedFunction, brokerId);
  if (props.federation === undefined) return {};
  if (byRole.size !== 1)
    throw new Error('TokenBroker: with federation, token and refresh functions share a role');
  const subject = (tokenFunction.role as iam.Role).roleArn;
  grantWebIdentityTokens(tokenFunction, federationAudiences(props.federation.audiences));
  for (const fn of [...fetching, adminFunction]) {
    fn.addEnvironment(FEDERATION_ISSUER_VARIABLE, props.federation.issuer);
    fn.addEnvironment(FEDERATION_SUBJECT_VARIABLE, subject);
  }
  // The admin function refuses a `federation_audience` the roles may not request (a 400, not a 502 later).
  if (props.federation.audiences?.length) {
    adminFunction.addEnvironment(FEDERATION_AUDIENCES_VARIABLE, props.federation.audiences.join(','));
  }
  return { federationSubject: subject };
}

const ownedBy = (brokerId: string) => ({ [`aws:ResourceTag/${BROKER_INSTANCE_TAG}`]: brokerId });

/** The request must carry this broker's instance tag and a service tag, and no other tag. */
const taggedRequest = (brokerId: string) => ({
  StringEquals: { [`aws:RequestTag/${BROKER_INSTANCE_TAG}`]: brokerId },
  'ForAllValues:StringEquals': { 'aws:TagKeys': [BROKER_INSTANCE_TAG, BROKER_KEY_TAG] },
  Null: { [`aws:RequestTag/${BROKER_KEY_TAG}`]: 'false' },
});

/**
 * The admin function's part of `kms_certificate`: create RSA SIGN_VERIFY keys only with this broker's tags, read
 * their public key and metadata, sign the self-signed certificate (PKCS#1 v1.5 only), and schedule the deletion of
 * keys the broker created (an administrator's own key, tagged with the instance tag only, is never deleted).
 */
export function grantSigningKeyAdministration(fn: lambda.Function, brokerId: string): void {
  const keys = accountKeysArn(fn);
  const request = taggedRequest(brokerId);
  // CreateKey has no resource type: "*" is the only resource it takes; the conditions bound what it creates.
  fn.addToRolePolicy(
    new iam.PolicyStatement({
      sid: 'CreateBrokerSigningKeys',
      actions: ['kms:CreateKey'],
      resources: ['*'],
      conditions: {
        ...request,
        StringEquals: {
          ...request.StringEquals,
          'kms:KeySpec': [...KMS_KEY_SPECS],
          'kms:KeyUsage': 'SIGN_VERIFY',
        },
      },
    }),
  );
  // CreateKey with Tags is also authorized as TagResource, on a key that does not exist yet: KMS requires this
  // permission to cover every key of the account and Region.
  fn.addToRolePolicy(
    new iam.PolicyStatement({
      sid: 'TagBrokerSigningKeysAtCreation',
      actions: ['kms:TagResource'],
      resources: [keys],
      conditions: request,
    }),
  );
  fn.addToRolePolicy(
    new iam.PolicyStatement({
      sid: 'ReadBrokerSigningKeys',
      actions: ['kms:DescribeKey', 'kms:GetPublicKey'],
      resources: [keys],
      conditions: { StringEquals: ownedBy(brokerId) },
    }),
  );
  fn.addToRolePolicy(
    new iam.PolicyStatement({
      sid: 'SignBrokerCertificates',
      actions: ['kms:Sign'],
      resources: [keys],
      conditions: {
        StringEquals: { ...ownedBy(brokerId), 'kms:SigningAlgorithm': CERTIFICATE_SIGNING_ALGORITHM },
      },
    }),
  );
  fn.addToRolePolicy(
    new iam.PolicyStatement({
      sid: 'RetireBrokerCreatedSigningKeys',
      actions: ['kms:ScheduleKeyDeletion'],
      resources: [keys],
      // The key's own spec and usage too: whatever tags a key carries, no encryption key is ever deleted here.
      conditions: {
        StringEquals: {
          ...ownedBy(brokerId),
          'kms:KeySpec': [...KMS_KEY_SPECS],
          'kms:KeyUsage': 'SIGN_VERIFY',
        },
        Null: { [`aws:ResourceTag/${BROKER_KEY_TAG}`]: 'false' },
      },
    }),
  );
  const role = fn.role as iam.Role;
  acknowledgeKeyWildcard(role);
  Validations.of(role).acknowledge({
    id: 'AwsSolutions-IAM5[Resource::*]',
    reason:
      'kms:CreateKey has no resource type, so "*" is its only resource: the conditions allow only RSA ' +
      'SIGN_VERIFY keys created with exactly the broker instance and service tags. (Also X-Ray, as on every role.)',
  });
}

/**
 * The token-fetching functions' part of `kms_certificate`: kms:Sign with PS256 (RSASSA_PSS_SHA_256, the client
 * assertion) on this broker's keys, nothing else.
 */
export function grantAssertionSigning(fn: lambda.Function, brokerId: string): void {
  fn.addToRolePolicy(
    new iam.PolicyStatement({
      sid: 'SignClientAssertionsWithBrokerKeys',
      actions: ['kms:Sign'],
      resources: [accountKeysArn(fn)],
      conditions: {
        StringEquals: { ...ownedBy(brokerId), 'kms:SigningAlgorithm': ASSERTION_SIGNING_ALGORITHM },
      },
    }),
  );
  acknowledgeKeyWildcard(fn.role as iam.Role);
}

/** The audiences a broker's web identity tokens may name: Entra's global one and the configured ones. */
export function federationAudiences(configured: readonly string[] = []): string[] {
  return [...new Set([DEFAULT_FEDERATION_AUDIENCE, ...configured])];
}

/**
 * The token-fetching functions' part of `federated`: sts:GetWebIdentityToken (no resource type: "*"), only for the
 * given audiences (every audience of the request, and at least one), RS256, at most the lifetime the broker asks.
 */
export function grantWebIdentityTokens(fn: lambda.Function, audiences: readonly string[]): void {
  fn.addToRolePolicy(
    new iam.PolicyStatement({
      sid: 'WebIdentityTokensForEntra',
      actions: ['sts:GetWebIdentityToken'],
      resources: ['*'],
      conditions: {
        'ForAllValues:StringEquals': { 'sts:IdentityTokenAudience': [...audiences] },
        Null: { 'sts:IdentityTokenAudience': 'false' },
        StringEquals: { 'sts:SigningAlgorithm': WEB_IDENTITY_SIGNING_ALGORITHM },
        NumericLessThanEquals: { 'sts:DurationSeconds': WEB_IDENTITY_TOKEN_SECONDS },
      },
    }),
  );
  Validations.of(fn.role as iam.Role).acknowledge({
    id: 'AwsSolutions-IAM5[Resource::*]',
    reason:
      'sts:GetWebIdentityToken has no resource type, so "*" is its only resource: the conditions allow only ' +
      "tokens for Entra's audiences, RS256, of at most 5 minutes. (Also X-Ray, as on every role.)",
  });
}

function acknowledgeKeyWildcard(role: iam.Role): void {
  Validations.of(role).acknowledge({
    id: `AwsSolutions-IAM5[Resource::${asCdkNagRenders(role, accountKeysArn(role))}]`,
    reason:
      'Signing keys are created at run time, one per kms_certificate service, so no key ARN is known at deploy ' +
      "time: every statement on them requires the key's token-broker:broker tag to name this broker.",
  });
}
