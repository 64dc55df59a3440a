/* serve.c — the public face of the server (include/dfd/server.h): dfd_serve_options
 * mapped onto dfd_server_config, and dfd_worker_options onto dfd_worker_config, with the
 * library analyzer. */
#include <string.h>

#include "dfd/server.h"
#include "server.h"

void dfd_serve_options_default(dfd_serve_options *o) {
    memset(o, 0, sizeof *o);
    dfd_server_config c;
    dfd_server_config_default(&c);
    o->host = c.host;
    o->port = c.port;
    o->threads = c.threads;
    o->workers = c.workers;
    o->queue = c.queue;
    o->max_upload_bytes = c.max_upload_bytes;
    o->max_held_bytes = c.max_held_bytes;
    o->job_ttl_s = c.job_ttl_s;
    o->conn_timeout_s = c.conn_timeout_s;
    o->max_connections = c.max_connections;
    o->max_conn_per_ip = c.max_conn_per_ip;
    o->request_timeout_s = c.request_timeout_s;
    o->min_upload_rate = c.min_upload_rate;
    dfd_options_default(&o->analysis);
}

int dfd_serve(const dfd_serve_options *o, int stop_fd, dfd_error *err) {
    if (!o) return srv_fail(err, DFD_E_ARG, "dfd_serve: no options");
    if (o->max_held_bytes && o->max_held_bytes < o->max_upload_bytes)
        return srv_fail(err, DFD_E_ARG, "the upload bytes held at once (%llu MiB) are fewer than one upload may have (%llu MiB)",
                        (unsigned long long)(o->max_held_bytes >> 20), (unsigned long long)(o->max_upload_bytes >> 20));
    if (o->workers > 0 && o->threads > 0 && o->workers > o->threads)
        return srv_fail(err, DFD_E_ARG, "more workers (%d) than threads (%d)", o->workers, o->threads);
    if (o->analysis.synthetic_model && o->analysis.no_synthetic)
        return srv_fail(err, DFD_E_ARG, "a synthetic-face model is named and no_synthetic is set");
    dfd_server_config c;
    dfd_server_config_default(&c);
    c.host = o->host;
    c.port = o->port;
    c.threads = o->threads;
    c.workers = o->workers;
    c.queue = o->queue;
    c.max_upload_bytes = o->max_upload_bytes;
    c.max_held_bytes = o->max_held_bytes;
    c.job_ttl_s = o->job_ttl_s;
    c.conn_timeout_s = o->conn_timeout_s;
    c.max_connections = o->max_connections;
    c.max_conn_per_ip = o->max_conn_per_ip;
    c.request_timeout_s = o->request_timeout_s;
    c.min_upload_rate = o->min_upload_rate;
    c.broker_url = o->broker_url;
    c.spool_dir = o->spool_dir;
    c.require_models = o->require_models;
    c.on_ready = o->on_ready;
    c.access_log = o->access_log;
    c.user = o->user;
    dfd_server_analyzer an;
    dfd_server_library_analyzer(&an, &o->analysis);
    c.analyzer = &an;
    return dfd_server_run(&c, stop_fd, err);
}

void dfd_worker_options_default(dfd_worker_options *o) {
    memset(o, 0, sizeof *o);
    dfd_worker_config c;
    dfd_worker_config_default(&c);
    o->threads = c.threads;
    o->visibility_timeout_s = c.visibility_timeout_s;
    o->max_attempts = c.max_attempts;
    o->max_upload_bytes = c.max_upload_bytes;
    dfd_options_default(&o->analysis);
}

int dfd_worker(const dfd_worker_options *o, int stop_fd, dfd_error *err) {
    if (!o || !o->broker_url) return srv_fail(err, DFD_E_ARG, "dfd_worker: no broker URL");
    if (o->analysis.synthetic_model && o->analysis.no_synthetic)
        return srv_fail(err, DFD_E_ARG, "a synthetic-face model is named and no_synthetic is set");
    dfd_worker_config c;
    dfd_worker_config_default(&c);
    c.broker_url = o->broker_url;
    c.spool_dir = o->spool_dir;
    c.threads = o->threads;
    c.name = o->name;
    c.visibility_timeout_s = o->visibility_timeout_s;
    c.max_attempts = o->max_attempts;
    c.max_upload_bytes = o->max_upload_bytes;
    c.on_ready = o->on_ready;
    c.log = o->log;
    c.user = o->user;
    dfd_server_analyzer an;
    dfd_server_library_analyzer(&an, &o->analysis);
    c.analyzer = &an;
    return dfd_worker_run(&c, stop_fd, err);
}
