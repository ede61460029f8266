"""``Idempotency-Key`` on the backend API's writes: a retry learns what its first attempt answered.

The IETF draft "The Idempotency-Key HTTP Header Field" (draft-ietf-httpapi-idempotency-key-header),
as Stripe runs it: a client that timed out sends the same request again with the same key and gets
the first answer (status, body, ``Content-Type``/``Location``) marked ``Idempotent-Replayed: true``.
The same key with another request (method, path and query, ``Provider-Config-Key``, body) is a 422;
a retry while the first attempt still runs is a 409 (the draft's answer: holding the retry until the
first ends would tie up a connection for as long as the first takes, past the client's own timeout).
Keys are the environment's: two apps never share one. Outcomes are kept 24 h (``request_outcomes``).

What is kept: every answer the view gave below 500, errors included (the draft replays "success or
an error"; Stripe too, once the endpoint ran), but 408 and 429, which only say "later". What is not:
a 5xx (unlike Stripe, which replays even its 500s: here a 5xx is the database or broker away, a 503
the retry must run again), nor what is answered before the view runs (401, 429, this key's own
400/409/422, a body too large): the key is then free for the same request.

Which routes: the secret-key POST, PATCH and DELETE routes (the backend's writes), not the proxy
(its calls are the upstream's; ``Nango-Proxy-Idempotency-Key`` reaches an upstream that has keys).
The browser's connect routes do not take it: Nango's frontend SDK never sends one, a connect call is
already keyed by its connection id (a second attempt rewrites the same connection with the same
credentials), and the browser's credential is public. Requests without the header pay nothing.

A ``DELETE /connection`` records its key in the deletion's transaction
(``operations/connection_removal``), so an attempt that takes over a claim whose holder died after
the delete answers success, not 404.

The parts: ``header`` (which routes take the header, how its value is read, what makes two requests
the same), ``claims`` (this request's claim on its key, and giving it back), ``replay`` (which
answers are kept, and answering with one), ``middleware`` (the order they run in). The store is the
shared library's ``RequestOutcomeStore``; whose key a request carries is asked of the gateway
(``key_owner``), so this package reads nothing of the gateway but ``http/``.
"""
