import { Aws } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type { ResolvedBrokerProps } from './props';

/**
 * Same-account callers are authorized by their identity policies alone (AWS_IAM). The resource policy, when
 * there is one, only lets chosen other accounts in (they need an identity policy too) and denies requests
 * from outside the allowed VPC endpoints or IP ranges. Nothing here allows a principal that its own identity
 * policies do not, so per-service grants keep meaning what they say.
 */
export function brokerResourcePolicy(props: ResolvedBrokerProps): iam.PolicyDocument | undefined {
  const { endpointType } = props;
  const statements: iam.PolicyStatement[] = [];
  const invoke = { actions: ['execute-api:Invoke'], resources: ['execute-api:/*'] };
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

  // Account principals delegate to the identity policies of that account; this one included.
  statements.push(
    new iam.PolicyStatement({
      ...invoke,
      sid: 'AllowAccounts',
      principals: [new iam.AccountRootPrincipal(), ...accounts.map((a) => new iam.AccountPrincipal(a))],
    }),
  );
  if (props.allowedOrganizationId !== undefined) {
    // Principal "*" would also let this account's principals in without an identity policy: exclude them.
    statements.push(
      new iam.PolicyStatement({
        ...invoke,
        sid: 'AllowOrganization',
        principals: [new iam.AnyPrincipal()],
        conditions: {
          StringEquals: { 'aws:PrincipalOrgID': props.allowedOrganizationId },
          StringNotEquals: { 'aws:PrincipalAccount': Aws.ACCOUNT_ID },
        },
      }),
    );
  }
  if (vpceIds.length > 0) {
    statements.push(
      new iam.PolicyStatement({
        ...invoke,
        sid: 'DenyOtherVpcEndpoints',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        conditions: { StringNotEquals: { 'aws:SourceVpce': vpceIds } },
      }),
    );
  }
  if (sourceIps.length > 0) {
    statements.push(
      new iam.PolicyStatement({
        ...invoke,
        sid: 'DenyOtherSourceIps',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        conditions: { NotIpAddress: { 'aws:SourceIp': sourceIps } },
      }),
    );
  }
  return new iam.PolicyDocument({ statements });
}
