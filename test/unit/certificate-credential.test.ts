import { generateKeyPairSync } from 'node:crypto';
import { certificateFacts, checkImportedCertificate } from '../../lib/credentials/certificate';
import { ValidationError } from '../../lib/errors';
import { type ClientCertificate, createClientCertificate } from '../fixtures/client-certificates';

let valid: ClientCertificate;
let other: ClientCertificate;
let small: ClientCertificate;
let expired: ClientCertificate;
const NOW = Date.now();

beforeAll(async () => {
  [valid, other, small, expired] = await Promise.all([
    createClientCertificate(),
    createClientCertificate(),
    createClientCertificate({ modulusLength: 1024 }),
    createClientCertificate({
      notBefore: new Date(NOW - 10 * 86_400_000),
      notAfter: new Date(NOW - 86_400_000),
    }),
  ]);
});

function refusal(certificatePem: string, privateKeyPem: string): ValidationError {
  try {
    checkImportedCertificate(certificatePem, privateKeyPem, NOW);
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return error as ValidationError;
  }
  throw new Error('expected a refusal');
}

it('accepts a matching RSA 2048 key and certificate and returns the public facts', () => {
  const facts = checkImportedCertificate(valid.certificatePem, valid.privateKeyPem, NOW);
  expect(facts.thumbprintSha256).toBe(valid.thumbprintSha256);
  expect(Date.parse(facts.notAfter)).toBeGreaterThan(NOW);
});

it('refuses a key that does not match the certificate', () => {
  expect(refusal(valid.certificatePem, other.privateKeyPem).message).toBe(
    'config.private_key: does not match config.certificate',
  );
});

it('refuses an RSA key under 2048 bits', () => {
  expect(refusal(small.certificatePem, small.privateKeyPem).message).toBe(
    'config.private_key: must be an RSA key of 2048 bits or more',
  );
});

it('refuses an expired certificate, naming when it expired', () => {
  expect(refusal(expired.certificatePem, expired.privateKeyPem).message).toMatch(
    /^config\.certificate: expired on \d{4}-\d{2}-\d{2}T/,
  );
});

it('refuses a certificate that is not PEM', () => {
  expect(refusal('MIIB...', valid.privateKeyPem).message).toMatch(
    /^config\.certificate: must be a PEM X\.509/,
  );
});

it('refuses a PKCS#1 key without quoting it', () => {
  const pkcs1 = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
    format: 'pem',
    type: 'pkcs1',
  }) as string;
  const error = refusal(valid.certificatePem, pkcs1);
  expect(error.message).toMatch(/^config\.private_key: must be an unencrypted PEM PKCS#8/);
  expect(error.message).not.toContain(pkcs1.split('\n')[1] as string);
});

it('refuses a non-RSA key', () => {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
    format: 'pem',
    type: 'pkcs8',
  }) as string;
  expect(refusal(valid.certificatePem, ec).message).toBe(
    'config.private_key: must be an RSA key of 2048 bits or more',
  );
});

it('reads a certificate’s thumbprint and validity', () => {
  const facts = certificateFacts(expired.certificatePem);
  expect(facts.thumbprintSha256).toBe(expired.thumbprintSha256);
  expect(Date.parse(facts.notAfter)).toBeLessThan(NOW);
});
