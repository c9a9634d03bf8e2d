import type { KmsSigningKey } from '../../lib/credentials/kms-credential-config';
import { ValidationError } from '../../lib/errors';
import { KmsCertificateRotation } from '../../lib/kms-certificate-rotation';
import type { ServiceRecord } from '../../lib/service-config';

/** What `config.active_certificate` does to a kms_certificate service's record (pure; no store involved). */

const key = (name: string, keyCreated = true): KmsSigningKey => ({
  keyArn: `arn:aws:kms:us-east-1:123456789012:key/${name}`,
  keyCreated,
  certificate: {
    pem: `PEM of ${name}`,
    thumbprintSha256: `thumb-${name}`,
    notAfter: '2027-11-27T00:00:00.000Z',
  },
});

function service(
  kms: ServiceRecord['kms'],
  credentialType: 'kms_certificate' | 'certificate' = 'kms_certificate',
) {
  return {
    name: 'graph',
    label: 'graph',
    description: '',
    type: 'oauth_azure_ad',
    is_active: true,
    config: {
      client_id: 'c',
      tenant_id: 't',
      grant_type: 'client_credentials',
      is_client_credentials: true,
      scopes: 'https://graph.microsoft.com/.default',
      credential_type: credentialType,
    },
    ...(kms ? { kms, certificate: kms.active.certificate } : {}),
    version: 'v1',
    created_at: '',
    updated_at: '',
  } as ServiceRecord;
}

describe('KmsCertificateRotation.activate', () => {
  it('makes the pending certificate the active one and names the replaced key for retirement', () => {
    const result = KmsCertificateRotation.activate(
      service({ active: key('old'), next: key('new') }),
      'thumb-new',
    );

    expect(result).toEqual({
      kms: { active: key('new') },
      certificate: key('new').certificate,
      retired: key('old'),
    });
  });

  it('changes nothing when the active certificate is named', () => {
    const kms = { active: key('old'), next: key('new') };

    expect(KmsCertificateRotation.activate(service(kms), 'thumb-old')).toEqual({
      kms,
      certificate: key('old').certificate,
    });
  });

  it('refuses an unknown thumbprint, naming the field and both known thumbprints', () => {
    const act = () =>
      KmsCertificateRotation.activate(service({ active: key('old'), next: key('new') }), 'thumb-other');

    expect(act).toThrow(ValidationError);
    expect(act).toThrow(
      'config.active_certificate: no certificate of this service has that thumbprint (active thumb-old, pending thumb-new)',
    );
  });

  it('says how to issue one when nothing is pending', () => {
    expect(() => KmsCertificateRotation.activate(service({ active: key('old') }), 'thumb-new')).toThrow(
      /none is pending: POST \/api\/v2\/system\/service\/graph\/certificate issues the next one/,
    );
  });

  it('refuses services of another credential type', () => {
    expect(() => KmsCertificateRotation.activate(service(undefined, 'certificate'), 'thumb-old')).toThrow(
      /^config\.active_certificate: only kms_certificate services/,
    );
  });
});
