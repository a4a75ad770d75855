#
# Varnish in front of `tskvm serve` (Varnish 7.1, Debian 12's `varnish` package).
#
#   tskvm serve --library guest/examples/library.json --listen 127.0.0.1:8080 &
#   varnishd -F -a :6081 -f "$PWD/varnish/default.vcl" -s malloc,256m
#   curl -i http://127.0.0.1:6081/hello/x          # X-Cache: MISS (hello is not cacheable)
#
# What it caches: only what tskvm marks cacheable. tskvm answers every request with Cache-Control
#   max-age=TTL, stale-while-revalidate=GRACE   the program called sys_set_cacheable(true, ttl, grace, …)
#                                               (or set cached=true in its BackendResponseExtra)
#   no-store                                    everything else: not cacheable, errors, 404, 413, 503…
# (unless the program set Cache-Control itself, which then wins). Varnish's built-in VCL already turns
# max-age into beresp.ttl and stale-while-revalidate into beresp.grace, and makes a `no-store` answer a
# hit-for-miss object, so every such request reaches tskvm. Requests other than GET/HEAD, and requests
# with Authorization or Cookie, are passed by the built-in VCL too (it runs after the subs below).
#
# Every response gets `X-Cache: HIT` (from the cache, also when served stale in grace) or `X-Cache: MISS`
# (fetched from tskvm: a miss, a pass or a hit-for-miss).
#
vcl 4.1;

# tskvm serve's TCP listener (`--listen 127.0.0.1:8080`, the default of `npm start`).
backend default {
    .host = "127.0.0.1";
    .port = "8080";
    # A guest may run up to its max_request_time (and wait in its queue) before the first byte.
    .first_byte_timeout = 60s;
}

# Or its Unix socket (`tskvm serve --unix /run/tskvm/tskvm.sock`): replace the block above with
#
#   backend default {
#       .path = "/run/tskvm/tskvm.sock";
#   }
#
# varnishd only warns when the socket does not exist yet when the VCL is loaded. The socket must be
# writable by varnishd's worker user (vcache on Debian). NOTE: tskvm trusts its Unix socket, so admin
# endpoints need no token there: the ACL below is then the only thing keeping them private.

# Who may reach tskvm's admin endpoints through Varnish (on TCP they still need the admin token).
acl tskvm_admin {
    "127.0.0.1";
    "::1";
}

sub vcl_recv {
    # Admin and observability endpoints (admin.ts): never cached, and only from the ACL above.
    if (req.url ~ "^/__tskvm/" || req.url ~ "^/metrics(\?|$)") {
        if (client.ip !~ tskvm_admin) {
            return (synth(403, "Forbidden"));
        }
        return (pass);
    }
    # Everything else: the built-in VCL (host normalisation, pass for POST/Authorization/Cookie), then lookup.
}

sub vcl_backend_response {
    # A revalidation in the background (a hit in grace) that fails keeps the stale object instead of
    # replacing it with the error: clients go on getting the last good answer until its grace runs out.
    if (bereq.is_bgfetch && beresp.status >= 500) {
        return (abandon);
    }
    # Grace is the program's stale-while-revalidate (Varnish's default for beresp.grace); TTL is its
    # max-age. tskvm's `keep` has no HTTP equivalent (and tskvm answers no conditional requests).
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
