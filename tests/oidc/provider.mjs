// A real OpenID Connect provider (panva's oidc-provider, certified) for rex's staff sign-in test,
// tests/it/sign_in.rs. One confidential client with PKCE required; staff sign in on a plain login
// form by account name (no password: a test provider); consent is granted with the login. The
// access token is a JWT for the resource server rex (audience `rex`) carrying rex's staff claims,
// signed, like the ID token, with the key the test gives (ES384).
//
// Environment: PORT, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, KEY_PEM (a P-384 private key, PEM),
// KID (its key id, as in rex's JWKS). Prints "ready" once it listens on 127.0.0.1:PORT.

import { createPrivateKey } from 'node:crypto';

import Provider from 'oidc-provider';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
};
const port = Number(env('PORT'));
const issuer = `http://127.0.0.1:${port}`;
const resource = 'urn:rex:fhir';
const key = { ...createPrivateKey(env('KEY_PEM')).export({ format: 'jwk' }), kid: env('KID'), alg: 'ES384', use: 'sig' };

// The staff accounts and the claims rex reads (rex_auth's defaults: rex_role, practitioner_role, rex_queues).
const staff = {
  'dr-lee': { rex_role: 'specialist', practitioner_role: 'PractitionerRole/dr-lee', rex_queues: ['cardiology'] },
  'coordinator-kim': { rex_role: 'coordinator', rex_queues: [] },
};

const provider = new Provider(issuer, {
  clients: [{
    client_id: env('CLIENT_ID'),
    client_secret: env('CLIENT_SECRET'),
    redirect_uris: [env('REDIRECT_URI')],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES384',
  }],
  jwks: { keys: [key] },
  enabledJWA: { idTokenSigningAlgValues: ['ES384'] },
  pkce: { required: () => true },
  scopes: ['openid', 'rex'],
  cookies: { keys: ['a test provider only'] },
  findAccount: (_ctx, id) => (staff[id] ? { accountId: id, claims: () => ({ sub: id }) } : undefined),
  extraTokenClaims: (_ctx, token) => (token.kind === 'AccessToken' ? staff[token.accountId] : undefined),
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'rex',
        audience: 'rex',
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES384' } },
      }),
    },
  },
});

const readForm = (req) => new Promise((resolve, reject) => {
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => resolve(new URLSearchParams(body)));
  req.on('error', reject);
});

// The login form, and its answer: the account signs in and consents to rex at once.
provider.use(async (ctx, next) => {
  const match = ctx.path.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (!match) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (ctx.method === 'GET') {
    ctx.type = 'html';
    ctx.body = `<form method="post" action="/interaction/${details.uid}/login">
<label>Account <input name="login"></label><button type="submit">Sign in</button></form>`;
    return undefined;
  }
  const account = (await readForm(ctx.req)).get('login');
  if (!staff[account]) {
    ctx.status = 401;
    ctx.body = 'unknown account';
    return undefined;
  }
  const grant = new provider.Grant({ accountId: account, clientId: details.params.client_id });
  grant.addOIDCScope('openid rex');
  grant.addResourceScope(resource, 'rex');
  const grantId = await grant.save();
  return provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: account }, consent: { grantId } });
});

provider.listen(port, '127.0.0.1', () => console.log('ready'));
