import { Aws } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import {
  adminRoutesAnyMethod,
  type ExecuteApiRoute,
  executeApiTail,
  tokenRoutesOfAnyService,
} from '../../lib/execute-api-grants';
import { ROUTES } from '../../lib/routes';
import type { ResolvedBrokerProps } from './props';

/** execute-api resources of a resource policy (`execute-api:/<stage>/<METHOD><path>`), any stage. */
const resourcesOf = (routes: readonly ExecuteApiRoute[]): string[] =>
  routes.map((r) => `execute-api:/*/${executeApiTail(r)}`);

/**
 * Same-account callers are authorized by their identity policies alone (AWS_IAM). The resource policy, when
 * there is one, lets chosen other accounts reach the token routes only (each caller still needs an identity
 * policy naming its services: cross-account access needs both), denies the admin routes to every principal
 * outside this account, and denies requests from outside the allowed VPC endpoints or IP ranges. Nothing here
 * allows a principal that its own identity policies do not, so per-service grants keep meaning what they say.
 *
 * The explicit Deny matters: a role in another account whose own policy allows `execute-api:Invoke` on `*`
 * (AdministratorAccess, PowerUserAccess, many CI roles) must not be able to register services or read every
 * service's token, and the token pattern `/api/v2/*` + `/client_credentials` also matches the admin path of a
 * service named `client_credentials`.
 */
export function brokerResourcePolicy(props: ResolvedBrokerProps): iam.PolicyDocument | undefined {
  const { endpointType } = props;
  const statements: iam.PolicyStatement[] = [];
  const actions = ['execute-api:Invoke'];
  const everything = ['execute-api:/*'];
  const accounts = props.allowedAccountIds ?? [];
  const vpceIds = [
    ...(props.vpcEndpoints ?? []).map((e) => e.vpcEndpointId),
    ...(props.allowedVpcEndpoints ?? []),
  ];
  const sourceIps = props.allowedSourceIps ?? [];
  const restricted =
    endpointType === 'PRIVATE' ||
    accounts.length > 0 ||
    props.allowedOrganizationId !== undefined ||
    sourceIps.length > 0;
  if (!restricted) return undefined;

  // The account principal delegates to this account's identity policies.
  statements.push(
    new iam.PolicyStatement({
      sid: 'AllowOwnAccount',
      actions,
      resources: everything,
      principals: [new iam.AccountRootPrincipal()],
    }),
  );
  const tokenRoutes = resourcesOf(tokenRoutesOfAnyService());
  if (accounts.length > 0) {
    statements.push(
      new iam.PolicyStatement({
        sid: 'AllowAccountsTokenRoutes',
        actions,
        resources: tokenRoutes,
        principals: accounts.map((a) => new iam.AccountPrincipal(a)),
      }),
    );
  }
  if (props.allowedOrganizationId !== undefined) {
    // Principal "*" would also let this account's principals in without an identity policy: exclude them.
    statements.push(
      new iam.PolicyStatement({
        sid: 'AllowOrganizationTokenRoutes',
        actions,
        resources: tokenRoutes,
        principals: [new iam.AnyPrincipal()],
        conditions: {
          StringEquals: { 'aws:PrincipalOrgID': props.allowedOrganizationId },
          StringNotEquals: { 'aws:PrincipalAccount': Aws.ACCOUNT_ID },
        },
      }),
    );
  }
  statements.push(
    new iam.PolicyStatement({
      sid: 'DenyAdminRoutesOutsideAccount',
      effect: iam.Effect.DENY,
      actions,
      resources: resourcesOf(adminRoutesAnyMethod()),
      principals: [new iam.AnyPrincipal()],
      conditions: { StringNotEquals: { 'aws:PrincipalAccount': Aws.ACCOUNT_ID } },
    }),
  );
  if (vpceIds.length > 0) {
    statements.push(
      new iam.PolicyStatement({
        sid: 'DenyOtherVpcEndpoints',
        effect: iam.Effect.DENY,
        actions,
        resources: everything,
        principals: [new iam.AnyPrincipal()],
        conditions: { StringNotEquals: { 'aws:SourceVpce': vpceIds } },
      }),
    );
  }
  if (sourceIps.length > 0) {
    statements.push(
      new iam.PolicyStatement({
        sid: 'DenyOtherSourceIps',
        effect: iam.Effect.DENY,
        actions,
        resources: everything,
        principals: [new iam.AnyPrincipal()],
        conditions: { NotIpAddress: { 'aws:SourceIp': sourceIps } },
      }),
    );
  }
  // The consent callback has no IAM: the user's browser calls it unsigned. A resource policy that lets only
  // accounts in would refuse it, so it is allowed for anyone (the deny statements above still apply).
  statements.push(
    new iam.PolicyStatement({
      sid: 'AllowConsentCallback',
      actions: ['execute-api:Invoke'],
      resources: ROUTES.filter((r) => r.auth === 'none').flatMap((r) =>
        r.methods.map((m) => `execute-api:/*/${m}${r.resource.replace(/\{[^}]+\}/g, '*')}`),
      ),
      principals: [new iam.AnyPrincipal()],
    }),
  );
  return new iam.PolicyDocument({ statements });
}
