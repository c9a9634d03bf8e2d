/**
 * The reference of the cold-start goal (issue 15): what a new user would write for a token endpoint without this
 * project, a middy handler over the DynamoDB client, lib-dynamodb's document client and a Secrets Manager client,
 * bundled and minified like the broker's handlers. It is only ever bundled and loaded by the benchmark; its
 * module load (require + client construction) is the yardstick, nothing is sent.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { DynamoDBDocumentClient, GetCommand } from '@aws-sdk/lib-dynamodb';
import middy from '@middy/core';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';

const documents = DynamoDBDocumentClient.from(new DynamoDBClient({}));
const secrets = new SecretsManagerClient({});

async function getToken(event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> {
  const name = event.pathParameters?.service ?? '';
  const cached = await documents.send(new GetCommand({ TableName: 'tokens', Key: { service: name } }));
  if (cached.Item) return { statusCode: 200, body: JSON.stringify(cached.Item) };
  const secret = await secrets.send(new GetSecretValueCommand({ SecretId: name }));
  return { statusCode: 200, body: JSON.stringify({ has_secret: secret.SecretString !== undefined }) };
}

export const handler = middy<APIGatewayProxyEvent, APIGatewayProxyResult>().handler(getToken);
