import { ArnFormat, Aws, Stack, Token, Validations } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import type { SealPurpose } from '../../lib/authorization-code/sealer';
import { MANAGED_SECRET_TAG } from '../../lib/secret-reference';
import { TOKEN_SEAL_PURPOSE } from '../../lib/token-encryption';
import type { ResolvedBrokerProps } from './props';
import type { BrokerStorage } from './storage';

/** One function's access to one table: the DynamoDB actions its adapter sends. */
export interface TableAccess {
  readonly table: dynamodb.ITable;
  readonly actions: readonly string[];
}

/**
 * The IAM statements the broker's functions get: per table the actions their adapters send, the key only through
 * the service that uses it, and the secrets by name prefix (own) or by the operator's list (referenced).
 */
export class BrokerPermissions {
  private readonly key: BrokerStorage['key'];
  private readonly secretPrefix: string;
  private readonly referenced: readonly string[];
  private readonly referencedKeyArns: readonly string[];

  constructor(
    private readonly scope: Construct,
    storage: BrokerStorage,
    props: ResolvedBrokerProps,
  ) {
    this.key = storage.key;
    this.secretPrefix = props.secretPrefix;
    this.referenced = props.allowedSecretArns;
    this.referencedKeyArns = props.allowedSecretKeyArns;
  }

  /** ARN pattern of the broker's own secrets (under the prefix). */
  managedSecretsArn(): string {
    return Stack.of(this.scope).formatArn({
      service: 'secretsmanager',
      resource: 'secret',
      resourceName: `${this.secretPrefix}*`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
  }

  /**
   * lib/token-encryption.ts: the functions that write or read cached tokens seal and open them with data keys of
   * the broker key, only under the token cache's encryption context (so these rights open nothing else).
   */
  grantTokenSealing(fn: lambda.Function): void {
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
        resources: [this.key.keyArn],
        conditions: { StringEquals: { 'kms:EncryptionContext:purpose': TOKEN_SEAL_PURPOSE } },
      }),
    );
  }

  /**
   * lib/authorization-code/sealer.ts: the delegated function seals and opens users' refresh tokens and PKCE
   * verifiers with data keys of the broker key, only under those purposes (the context also names service and
   * user_key, so a sealed value opens only for its own user).
   */
  grantUserSecretSealing(fn: lambda.Function): void {
    const purposes: SealPurpose[] = ['token-broker:refresh-token', 'token-broker:pkce-verifier'];
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
        resources: [this.key.keyArn],
        conditions: { StringEquals: { 'kms:EncryptionContext:purpose': purposes } },
      }),
    );
  }

  grantTableAccess(fn: lambda.Function, access: readonly TableAccess[]): void {
    for (const { table, actions } of access) {
      fn.addToRolePolicy(new iam.PolicyStatement({ actions: [...actions], resources: [table.tableArn] }));
    }
    // DynamoDB uses the table key on the caller's behalf: the key actions CDK's own table grants use, spelled out,
    // and only through DynamoDB.
    const writes = access.some(({ actions }) => actions.some((a) => !/:(GetItem|Query|Scan)$/.test(a)));
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        actions: [
          'kms:Decrypt',
          'kms:DescribeKey',
          ...(writes ? ['kms:Encrypt', 'kms:ReEncryptFrom', 'kms:ReEncryptTo', 'kms:GenerateDataKey'] : []),
        ],
        resources: [this.key.keyArn],
        conditions: { StringEquals: { 'kms:ViaService': `dynamodb.${Aws.REGION}.amazonaws.com` } },
      }),
    );
  }

  /**
   * Secrets under the prefix are the broker's own: the admin function creates (with tags), deletes and checks
   * them; it never writes a value into an existing secret (a new client secret becomes a new secret). Referenced
   * secrets (allowedSecretArns) may only be checked.
   */
  grantSecretAdministration(fn: lambda.Function): void {
    const managed = this.managedSecretsArn();
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['secretsmanager:CreateSecret', 'secretsmanager:TagResource', 'secretsmanager:DeleteSecret'],
        resources: [managed],
      }),
    );
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['secretsmanager:DescribeSecret'],
        resources: [managed, ...this.referenced],
      }),
    );
    // `certificate_secret_arn`: creation checks the certificate and key a referenced secret holds (match, expiry),
    // so the admin function reads referenced secrets; never the broker's own (they carry the managed tag), so an
    // administrator's function still cannot read any client secret the broker stores.
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['secretsmanager:GetSecretValue'],
        resources: [managed, ...this.referenced],
        conditions: { Null: { [`secretsmanager:ResourceTag/${MANAGED_SECRET_TAG}`]: 'true' } },
      }),
    );
    // Secrets Manager needs both to encrypt a new secret with a customer-managed key.
    fn.addToRolePolicy(this.ownSecretKeyStatement(['kms:GenerateDataKey', 'kms:Decrypt']));
    this.grantReferencedSecretKeys(fn);
    this.acknowledgeSecretWildcards(fn.role as iam.Role, this.referenced);
  }

  /** Read access to the service secrets (token and refresh functions): own ones and referenced ones. */
  grantSecretRead(fn: lambda.Function): void {
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['secretsmanager:GetSecretValue'],
        resources: [this.managedSecretsArn(), ...this.referenced],
      }),
    );
    fn.addToRolePolicy(this.ownSecretKeyStatement(['kms:Decrypt']));
    this.grantReferencedSecretKeys(fn);
    this.acknowledgeSecretWildcards(fn.role as iam.Role, this.referenced);
  }

  /** Decrypting referenced secrets encrypted with the operator's own keys (through Secrets Manager only). */
  private grantReferencedSecretKeys(fn: lambda.Function): void {
    if (this.referencedKeyArns.length > 0) {
      fn.addToRolePolicy(
        new iam.PolicyStatement({
          actions: ['kms:Decrypt'],
          resources: [...this.referencedKeyArns],
          conditions: {
            StringEquals: { 'kms:ViaService': `secretsmanager.${Aws.REGION}.amazonaws.com` },
          },
        }),
      );
    }
  }

  /** Acknowledges cdk-nag's wildcard finding on the prefix of own secrets, and on listed secret ARN prefixes. */
  acknowledgeSecretWildcards(role: iam.Role, referenced: readonly string[]): void {
    Validations.of(role).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${asCdkNagRenders(this.scope, this.managedSecretsArn())}]`,
      reason:
        'Secrets are created at run time, one per registered service, so only their name prefix is known at ' +
        'deploy time; the wildcard is confined to the broker prefix (and Secrets Manager appends a random suffix).',
    });
    for (const arn of referenced.filter((a) => !Token.isUnresolved(a) && a.endsWith('*'))) {
      Validations.of(role).acknowledge({
        id: `AwsSolutions-IAM5[Resource::${arn}]`,
        reason:
          'An operator-listed prefix of existing secrets that services may reference (allowedSecretArns); ' +
          'they may only be read (token and refresh functions) and checked (admin function), never changed.',
      });
    }
  }

  /** Secrets Manager uses the key with the caller's permissions; its encryption context names the secret. */
  private ownSecretKeyStatement(actions: string[]): iam.PolicyStatement {
    return new iam.PolicyStatement({
      actions,
      resources: [this.key.keyArn],
      conditions: {
        StringEquals: { 'kms:ViaService': `secretsmanager.${Aws.REGION}.amazonaws.com` },
        StringLike: { 'kms:EncryptionContext:SecretARN': this.managedSecretsArn() },
      },
    });
  }
}

/**
 * A template value as cdk-nag names it in a finding id: literal parts as they are, references flattened to
 * `<LogicalId>` or `<AWS::Region>` (an environment-agnostic stack renders ARNs with references, a stack with an
 * account and region with literals).
 */
export function asCdkNagRenders(scope: Construct, value: string): string {
  const render = (v: unknown): string => {
    if (typeof v === 'string') return v;
    const o = v as { Ref?: string; 'Fn::GetAtt'?: [string, string]; 'Fn::Join'?: [string, unknown[]] };
    if (o.Ref !== undefined) return `<${o.Ref}>`;
    if (o['Fn::GetAtt']) return `<${o['Fn::GetAtt'].join('.')}>`;
    if (o['Fn::Join']) return o['Fn::Join'][1].map(render).join(o['Fn::Join'][0]);
    throw new Error(`cannot render ${JSON.stringify(v)} as cdk-nag does`);
  };
  return render(Stack.of(scope).resolve(value));
}
