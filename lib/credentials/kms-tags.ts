/**
 * The tags of the broker's KMS signing keys, apart from the KMS adapter so that the functions' configuration
 * (functions/config.ts) and the CDK construct can name them without loading the KMS client.
 */

/** The tag naming the service a broker-created key signs for (informational; IAM does not read it). */
export const BROKER_KEY_TAG = 'token-broker:service';

/**
 * The tag naming the broker instance a key belongs to (its value: the instance id, the construct's `namePrefix`).
 * IAM lets a broker's functions use only keys whose tag carries their own instance id, and its admin function
 * create keys only with it, so two brokers in one account never reach each other's keys. Keys an administrator
 * brings (`config.kms_key_arn`) must carry it too.
 */
export const BROKER_INSTANCE_TAG = 'token-broker:broker';

/** What a KMS tag value may hold (https://docs.aws.amazon.com/kms/latest/APIReference/API_Tag.html). */
export const KMS_TAG_VALUE_PATTERN = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]{1,256}$/u;
