// Exercises an unmodified @nangohq/node release against a Keyway gateway and prints one JSON line per call:
//   {"name": ..., "ok": true, "value": ...}   or   {"name": ..., "ok": false, "error": {"status", "data", "message"}}
// tests/e2e/test_node_sdk.py runs it and checks every answer; this script only calls and reports.
//
// usage: KEYWAY_SECRET_KEY=<secret> KEYWAY_CHECK_CONFIG='<json>' node node_sdk_check.mjs <sdk package> <gateway url>
// The package is one of the npm aliases in package.json (nango-node-0408, nango-node-04211, nango-node-07110).
// The config names the integrations and connections the test prepared, and which sections to run: each
// SDK generation calls its own routes, so the test picks the sections its version's methods reach.

const [, , sdkPackage, host] = process.argv;
const secretKey = process.env.KEYWAY_SECRET_KEY;
const config = JSON.parse(process.env.KEYWAY_CHECK_CONFIG || '{}');
if (!sdkPackage || !host || !secretKey) {
    console.error('usage: KEYWAY_SECRET_KEY=… KEYWAY_CHECK_CONFIG=… node node_sdk_check.mjs <sdk package> <host>');
    process.exit(2);
}

const { Nango } = await import(sdkPackage);
const nango = new Nango({ host, secretKey });

function emit(line) {
    process.stdout.write(JSON.stringify(line) + '\n');
}

// Methods that hand back the axios response itself (setMetadata, deleteIntegration, proxy, …).
function response(res) {
    const headers = {};
    for (const name of ['content-type', 'x-upstream', 'x-ratelimit-limit', 'x-ratelimit-remaining']) {
        if (res.headers[name] !== undefined) headers[name] = res.headers[name];
    }
    return { status: res.status, data: res.data === '' ? null : res.data, headers };
}

async function call(name, fn, { raw = false } = {}) {
    try {
        const value = await fn();
        emit({ name, ok: true, value: raw ? response(value) : value === undefined ? null : value });
    } catch (err) {
        const error = { status: null, data: null, message: String(err && err.message) };
        if (err && err.response) {
            error.status = err.response.status;
            error.data = err.response.data === '' ? null : err.response.data;
            error.headers = response(err.response).headers;
            error.isAxiosError = err.isAxiosError === true;
        }
        emit({ name, ok: false, error });
    }
}

const sections = new Set(config.sections || []);
const { oauth, apiKey, basic, oauth1 } = config;

if (sections.has('integrations')) {
    const it = config.integration;
    await call('listIntegrations', () => nango.listIntegrations());
    await call('createIntegration', () =>
        nango.createIntegration(it.provider, it.key, {
            oauth_client_id: 'client-1',
            oauth_client_secret: 'secret-1',
            oauth_scopes: 'repo, user'
        })
    );
    await call('createIntegration.duplicate', () =>
        nango.createIntegration(it.provider, it.key, { oauth_client_id: 'x', oauth_client_secret: 'y' })
    );
    await call('createIntegration.arrayScopes', () =>
        nango.createIntegration(it.provider, it.key + '-b', { oauth_client_id: 'x', oauth_client_secret: 'y', oauth_scopes: ['a', 'b'] })
    );
    await call('getIntegration', () => nango.getIntegration(it.key));
    await call('getIntegration.withCredentials', () => nango.getIntegration(it.key, true));
    await call('updateIntegration', () =>
        nango.updateIntegration(it.provider, it.key, { oauth_client_id: 'client-2', oauth_client_secret: 'secret-2', oauth_scopes: 'repo' })
    );
    await call('getIntegration.afterUpdate', () => nango.getIntegration(it.key, true));
    await call('updateIntegration.apiKey', () => nango.updateIntegration('posthog', apiKey.key, {}));
    await call('updateIntegration.unknown', () =>
        nango.updateIntegration(it.provider, 'no-such-integration', { oauth_client_id: 'x', oauth_client_secret: 'y' })
    );
    await call('listIntegrations.afterCreate', () => nango.listIntegrations());
    await call('deleteIntegration', () => nango.deleteIntegration(it.key), { raw: true });
    await call('deleteIntegration.again', () => nango.deleteIntegration(it.key), { raw: true });
    await call('getIntegration.unknown', () => nango.getIntegration(it.key));
}

if (sections.has('connections')) {
    await call('getConnection', () => nango.getConnection(oauth.key, oauth.connectionId));
    await call('getConnection.refreshToken', () => nango.getConnection(oauth.key, oauth.connectionId, false, true));
    await call('getConnection.forceRefresh', () => nango.getConnection(oauth.key, oauth.connectionId, true, false));
    await call('getConnection.forceRefresh.refreshToken', () => nango.getConnection(oauth.key, oauth.connectionId, true, true));
    await call('getToken', () => nango.getToken(oauth.key, oauth.connectionId));
    await call('getToken.forceRefresh', () => nango.getToken(oauth.key, oauth.connectionId, true));
    await call('getToken.afterForce', () => nango.getToken(oauth.key, oauth.connectionId));
    await call('getToken.apiKey', () => nango.getToken(apiKey.key, apiKey.connectionId));
    await call('getToken.basic', () => nango.getToken(basic.key, basic.connectionId));
    await call('getToken.oauth1', () => nango.getToken(oauth1.key, oauth1.connectionId));
    await call('getRawTokenResponse', () => nango.getRawTokenResponse(oauth.key, oauth.connectionId));
    await call('listConnections', () => nango.listConnections());
    await call('listConnections.one', () => nango.listConnections(apiKey.connectionId));
    await call('listConnections.none', () => nango.listConnections('nobody-has-this-id'));
    await call('getConnection.unknown', () => nango.getConnection(oauth.key, 'nobody-has-this-id'));
    await call('getConnection.unknownIntegration', () => nango.getConnection('no-such-integration', oauth.connectionId));
}

if (sections.has('metadata')) {
    await call('setMetadata', () => nango.setMetadata(apiKey.key, apiKey.connectionId, { plan: 'pro', seats: 3 }), { raw: true });
    await call('getMetadata.afterSet', () => nango.getMetadata(apiKey.key, apiKey.connectionId));
    await call('updateMetadata', () => nango.updateMetadata(apiKey.key, apiKey.connectionId, { seats: 5, region: 'eu' }), { raw: true });
    await call('getMetadata.afterUpdate', () => nango.getMetadata(apiKey.key, apiKey.connectionId));
    await call('setMetadata.replace', () => nango.setMetadata(apiKey.key, apiKey.connectionId, { only: true }), { raw: true });
    await call('getMetadata.afterReplace', () => nango.getMetadata(apiKey.key, apiKey.connectionId));
    await call('setMetadata.many', () =>
        nango.setMetadata(basic.key, [basic.connectionId, basic.otherConnectionId], { team: 'a' }), { raw: true }
    );
    await call('listConnections.afterMetadata', () => nango.listConnections(basic.otherConnectionId));
    await call('setMetadata.unknown', () => nango.setMetadata(apiKey.key, 'nobody-has-this-id', { a: 1 }), { raw: true });
    await call('getMetadata.none', () => nango.getMetadata(oauth1.key, oauth1.connectionId));
}

if (sections.has('webhooks')) {
    for (const [i, hook] of (config.webhooks || []).entries()) {
        const payload = JSON.parse(hook.body);
        await call(`verifyWebhookSignature.${i}`, () => nango.verifyWebhookSignature(hook.signature, payload));
        await call(`verifyWebhookSignature.${i}.tampered`, () =>
            nango.verifyWebhookSignature(hook.signature, { ...payload, connectionId: payload.connectionId + 'x' })
        );
    }
}

if (sections.has('webhooks.hmac')) {
    // verifyIncomingWebhookRequest (0.71): the raw body and the headers, X-Nango-Hmac-Sha256 among them,
    // checked with the environment's webhook signing key, as a 0.71 client is built today (apiKey +
    // webhookSigningKey); a client built with the secret key checks it with that key, which does not sign it.
    const signed = new Nango({ host, apiKey: secretKey, webhookSigningKey: config.webhookSigningKey });
    for (const [i, hook] of (config.webhooks || []).entries()) {
        const headers = { 'Content-Type': 'application/json', 'X-Nango-Hmac-Sha256': hook.hmac };
        await call(`verifyIncomingWebhookRequest.${i}`, () => signed.verifyIncomingWebhookRequest(hook.body, headers));
        await call(`verifyIncomingWebhookRequest.${i}.tampered`, () => signed.verifyIncomingWebhookRequest(hook.body + ' ', headers));
        await call(`verifyIncomingWebhookRequest.${i}.secretKey`, () => nango.verifyIncomingWebhookRequest(hook.body, headers));
    }
}

if (sections.has('providers')) {
    await call('listProviders', () => nango.listProviders({}));
    await call('listProviders.search', () => nango.listProviders({ search: 'GIT' }));
    await call('listProviders.searchNothing', () => nango.listProviders({ search: 'no-provider-is-called-this' }));
    await call('listProviders.badSearch', () => nango.listProviders({ search: 'git*' }));
    await call('getProvider', () => nango.getProvider({ provider: 'github' }));
    await call('getProvider.alias', () => nango.getProvider({ provider: 'github-app' }));
    await call('getProvider.unknown', () => nango.getProvider({ provider: 'no-such-provider' }));
    // getProviderTemplates (0.71): Nango's ready-made syncs and actions for the provider; Keyway ships none
    await call('getProviderTemplates', () => nango.getProviderTemplates({ provider: 'github' }));
    await call('getProviderTemplates.badName', () => nango.getProviderTemplates({ provider: 'git hub' }));
    const unknown = new Nango({ host, secretKey: '00000000-0000-4000-8000-000000000000' });
    await call('listProviders.unknownKey', () => unknown.listProviders({}));
}

if (sections.has('auth')) {
    const unknown = new Nango({ host, secretKey: '00000000-0000-4000-8000-000000000000' });
    await call('auth.unknownKey', () => unknown.listIntegrations());
    const malformed = new Nango({ host, secretKey: 'not-a-uuid' });
    await call('auth.malformedKey', () => malformed.listConnections());
}

if (sections.has('delete')) {
    await call('deleteConnection', () => nango.deleteConnection(apiKey.key, apiKey.connectionId), { raw: true });
    await call('deleteConnection.again', () => nango.deleteConnection(apiKey.key, apiKey.connectionId), { raw: true });
    await call('listConnections.afterDelete', () => nango.listConnections(apiKey.connectionId));
}

if (sections.has('proxy')) {
    const p = config.proxy;
    const target = { providerConfigKey: oauth.key, connectionId: oauth.connectionId };
    await call(
        'proxy.get',
        () => nango.get({ ...target, endpoint: '/echo/items', params: { page: '2', q: 'a b' }, headers: { 'X-Custom': 'v1' } }),
        { raw: true }
    );
    await call('proxy.post', () => nango.post({ ...target, endpoint: 'echo/items', data: { name: 'n', n: 1 } }), { raw: true });
    await call('proxy.patch', () => nango.patch({ ...target, endpoint: '/echo/items/7', data: { name: 'm' } }), { raw: true });
    await call('proxy.delete', () => nango.delete({ ...target, endpoint: '/echo/items/7' }), { raw: true });
    await call('proxy.put', () => nango.proxy({ ...target, method: 'PUT', endpoint: '/echo/items/8', data: { v: true } }), { raw: true });
    await call('proxy.retries', () => nango.get({ ...target, endpoint: '/flaky/a?times=2', retries: 3 }), { raw: true });
    await call('proxy.retryOn', () => nango.get({ ...target, endpoint: '/flaky/b?times=1&code=409', retries: 2, retryOn: [409] }), { raw: true });
    await call('proxy.noRetries', () => nango.get({ ...target, endpoint: '/flaky/c?times=1' }), { raw: true });
    await call('proxy.upstream404', () => nango.get({ ...target, endpoint: '/status/404' }), { raw: true });
    await call(
        'proxy.apiKey.baseUrlOverride',
        () => nango.get({ providerConfigKey: apiKey.key, connectionId: apiKey.connectionId, endpoint: '/echo/me', baseUrlOverride: p.base }),
        { raw: true }
    );
    await call(
        'proxy.basic.baseUrlOverride',
        () => nango.get({ providerConfigKey: basic.key, connectionId: basic.connectionId, endpoint: '/echo/me', baseUrlOverride: p.base }),
        { raw: true }
    );
    await call('proxy.unknownConnection', () => nango.get({ providerConfigKey: oauth.key, connectionId: 'nobody-has-this-id', endpoint: '/echo/x' }), {
        raw: true
    });
}

if (sections.has('connectSessions')) {
    // createConnectSession / createReconnectSession (0.71): Nango's current bodies, answered {data: {token, connect_link, expires_at}}
    await call('createConnectSession', () =>
        nango.createConnectSession({
            end_user: { id: 'node-user', email: 'node@example.com', display_name: 'Node', tags: { plan: 'pro' } },
            organization: { id: 'node-org', display_name: 'Node Org' },
            tags: { team: 'sdk' },
            allowed_integrations: [apiKey.key],
            integrations_config_defaults: {
                [oauth.key]: { user_scopes: 'a', authorization_params: { prompt: 'consent' }, connection_config: { oauth_scopes_override: 'read' } }
            },
            webhook_url_override: 'https://hooks.example.com/node'
        })
    );
    await call('createConnectSession.tagsOnly', () => nango.createConnectSession({ tags: { project: 'p' } }));
    await call('createConnectSession.invalid', () => nango.createConnectSession({ end_user: { id: 'u', email: 'nope' } }));
    await call('createReconnectSession', () => nango.createReconnectSession({ connection_id: apiKey.connectionId, integration_id: apiKey.key }));
    await call('createReconnectSession.unknown', () =>
        nango.createReconnectSession({ connection_id: 'nobody-has-this-id', integration_id: apiKey.key })
    );
}

if (sections.has('integrations.current')) {
    // listIntegrations, getIntegration, createIntegration, updateIntegration, deleteIntegration (0.71): /integrations
    const it = config.integration;
    const client = { type: 'OAUTH2', client_id: 'client-1', client_secret: 'secret-1', scopes: 'repo,user' };
    await call('current.listIntegrations', () => nango.listIntegrations());
    await call('current.createIntegration', () =>
        nango.createIntegration({ provider: it.provider, unique_key: it.key, display_name: 'Node GitHub', credentials: client })
    );
    await call('current.createIntegration.duplicate', () => nango.createIntegration({ provider: it.provider, unique_key: it.key, credentials: client }));
    await call('current.createIntegration.legacyBody', () =>
        nango.createIntegration({ provider: it.provider, unique_key: it.key + '-b', oauth_client_id: 'x', oauth_client_secret: 'y' })
    );
    await call('current.getIntegration', () => nango.getIntegration({ uniqueKey: it.key }));
    await call('current.getIntegration.credentials', () => nango.getIntegration({ uniqueKey: it.key }, { include: ['credentials'] }));
    await call('current.getIntegration.webhook', () => nango.getIntegration({ uniqueKey: it.key }, { include: ['webhook'] }));
    await call('current.updateIntegration', () =>
        nango.updateIntegration(
            { uniqueKey: it.key },
            { display_name: 'Node GitHub 2', forward_webhooks: false, credentials: { type: 'OAUTH2', client_id: 'client-2', client_secret: 'secret-2' } }
        )
    );
    await call('current.getIntegration.afterUpdate', () => nango.getIntegration({ uniqueKey: it.key }, { include: ['credentials'] }));
    await call('current.updateIntegration.unknown', () => nango.updateIntegration({ uniqueKey: 'no-such-integration' }, { display_name: 'x' }));
    await call('current.listIntegrations.afterCreate', () => nango.listIntegrations());
    await call('current.deleteIntegration', () => nango.deleteIntegration(it.key), { raw: true });
    await call('current.deleteIntegration.again', () => nango.deleteIntegration(it.key), { raw: true });
    await call('current.getIntegration.unknown', () => nango.getIntegration({ uniqueKey: it.key }));
    // createQuickstartIntegration (0.71): an integration on Nango's shared developer app, which Keyway has not
    await call('current.createQuickstartIntegration', () =>
        nango.createQuickstartIntegration({ provider: it.provider, unique_key: it.key + '-qs', display_name: 'Quick' })
    );
    await call('current.createQuickstartIntegration.noApp', () =>
        nango.createQuickstartIntegration({ provider: 'posthog', unique_key: it.key + '-qs' })
    );
}

if (sections.has('connections.current')) {
    // listConnections, getConnection, getToken, getRawTokenResponse, patchConnection, setMetadata, updateMetadata,
    // getMetadata, deleteConnection (0.71): /connections…, in Nango's current shapes
    await call('cur.getConnection', () => nango.getConnection(oauth.key, oauth.connectionId));
    await call('cur.getConnection.refreshToken', () => nango.getConnection(oauth.key, oauth.connectionId, false, true));
    await call('cur.getConnection.forceRefresh', () => nango.getConnection(oauth.key, oauth.connectionId, true, false));
    await call('cur.getToken', () => nango.getToken(oauth.key, oauth.connectionId));
    await call('cur.getToken.apiKey', () => nango.getToken(apiKey.key, apiKey.connectionId));
    await call('cur.getToken.basic', () => nango.getToken(basic.key, basic.connectionId));
    await call('cur.getToken.oauth1', () => nango.getToken(oauth1.key, oauth1.connectionId));
    await call('cur.getRawTokenResponse', () => nango.getRawTokenResponse(oauth.key, oauth.connectionId));
    await call('cur.getConnection.unknown', () => nango.getConnection(oauth.key, 'nobody-has-this-id'));
    await call('cur.getConnection.unknownIntegration', () => nango.getConnection('no-such-integration', oauth.connectionId));
    await call('cur.patchConnection', () =>
        nango.patchConnection(
            { connectionId: apiKey.connectionId, provider_config_key: apiKey.key },
            {
                end_user: { id: 'node-user', email: 'node@example.com', display_name: 'Node User' },
                tags: { team: 'sdk' },
                webhook_url_override: 'https://hooks.example.com/node'
            }
        )
    );
    await call('cur.patchConnection.invalid', () =>
        nango.patchConnection({ connectionId: apiKey.connectionId, provider_config_key: apiKey.key }, { tags: { '1bad': 'x' } })
    );
    await call('cur.getConnection.afterPatch', () => nango.getConnection(apiKey.key, apiKey.connectionId));
    await call('cur.listConnections', () => nango.listConnections());
    await call('cur.listConnections.one', () => nango.listConnections(apiKey.connectionId));
    await call('cur.listConnections.search', () => nango.listConnections(undefined, 'NODE-F'));
    await call('cur.listConnections.endUser', () => nango.listConnections(undefined, undefined, { endUserId: 'node-user' }));
    await call('cur.listConnections.params', () =>
        nango.listConnections({ integrationId: [apiKey.key, basic.key], tags: { team: 'sdk', displayName: 'Node User' }, limit: 5 })
    );
    await call('cur.listConnections.page', () => nango.listConnections({ limit: 2, page: 1 }));
    await call('cur.listConnections.beyond', () => nango.listConnections({ limit: 2, page: 50 }));
    await call('cur.listConnections.badLimit', () => nango.listConnections(undefined, undefined, { limit: 5000 }));
    await call('cur.setMetadata', () => nango.setMetadata(apiKey.key, apiKey.connectionId, { plan: 'pro', seats: 3 }), { raw: true });
    await call('cur.updateMetadata', () => nango.updateMetadata(apiKey.key, apiKey.connectionId, { seats: 5 }), { raw: true });
    await call('cur.getMetadata', () => nango.getMetadata(apiKey.key, apiKey.connectionId));
    await call('cur.setMetadata.many', () =>
        nango.setMetadata(basic.key, [basic.connectionId, basic.otherConnectionId], { team: 'a' }), { raw: true }
    );
    await call('cur.setMetadata.unknown', () => nango.setMetadata(apiKey.key, 'nobody-has-this-id', { a: 1 }), { raw: true });
    await call('cur.getMetadata.none', () => nango.getMetadata(oauth1.key, oauth1.connectionId));
    await call('cur.deleteConnection', () => nango.deleteConnection(apiKey.key, apiKey.connectionId), { raw: true });
    await call('cur.deleteConnection.again', () => nango.deleteConnection(apiKey.key, apiKey.connectionId), { raw: true });
    await call('cur.listConnections.afterDelete', () => nango.listConnections(apiKey.connectionId));
}
