/* {{name}}: a wasmos framework in C. Both halves live in this one component (world
 * wasmos:framework/framework@0.1.0); the glue in ../bindings/ was generated from
 * ../wit/framework.wit by `wit-bindgen c` (see README.md).
 *
 * Scheduler (hosted by the master): `wasmos dev --run {{crate}}.wasm -- [N]` launches N tasks
 * (default 4, at most 1000), the numbers 1..N, one per task, on offered resources; it relaunches
 * a task that fails (up to 3 launches) and finishes with "{{name}}: sum of squares of 1..=N = SUM".
 *
 * Executor (run by agents): a task's payload is a number; it returns its square.
 * `wasmos task run {{crate}}.wasm --payload 7` prints 49. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framework.h"

/* What one task asks for: a tenth of a core and 32 MiB. */
#define TASK_MILLICPUS 100
#define TASK_MEM_MB 32
#define DEFAULT_TASKS 4
#define MAX_TASKS 1000
/* Launches of one number before the framework gives up. */
#define MAX_LAUNCHES 3
/* How long a declined agent is not offered to this framework again. */
#define REFUSE_SECONDS 120.0

typedef framework_string_t str_t;

/* A view of a NUL-terminated string, for imports (which only borrow their arguments). */
static str_t view(const char *s) {
    return (str_t){(uint8_t *)s, strlen(s)};
}

/* Parses all of `len` bytes at `p` as a decimal number; false if they are not one. */
static bool parse_u64(const uint8_t *p, size_t len, uint64_t *out) {
    uint64_t v = 0;
    if (len == 0 || len > 20) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9' || v > (UINT64_MAX - (p[i] - '0')) / 10) {
            return false;
        }
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* Scheduler half: one instance per framework, hosted by the master. */

static struct {
    uint64_t n;
    /* Per number (index n-1): launches so far, and whether its square is in. */
    uint32_t launches[MAX_TASKS];
    bool done[MAX_TASKS];
    /* Whether it waits for an offer. */
    bool queued[MAX_TASKS];
    uint64_t queued_count;
    uint64_t done_count;
    uint64_t sum;
    bool finished;
} S;

static void finish(bool ok, const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    wasmos_framework_driver_result_string_string_t outcome = {.is_err = !ok};
    if (ok) {
        outcome.val.ok = view(buf);
    } else {
        outcome.val.err = view(buf);
    }
    S.finished = true;
    wasmos_framework_driver_finish(&outcome);
}

bool exports_wasmos_framework_scheduler_init(framework_list_string_t *args, str_t *err) {
    uint64_t n = DEFAULT_TASKS;
    bool ok = true;
    if (args->len > 1) {
        framework_string_dup(err, "{{name}}: usage: {{name}} [N]");
        ok = false;
    } else if (args->len == 1 &&
               (!parse_u64(args->ptr[0].ptr, args->ptr[0].len, &n) || n < 1 || n > MAX_TASKS)) {
        char buf[128];
        snprintf(buf, sizeof buf, "{{name}}: N must be a number from 1 to %d", MAX_TASKS);
        framework_string_dup(err, buf);
        ok = false;
    }
    if (ok) {
        S.n = n;
        for (uint64_t i = 0; i < n; i++) {
            S.queued[i] = true;
        }
        S.queued_count = n;
        wasmos_framework_driver_framework_progress_t progress = {
            .tasks_total = {.is_some = true, .val = n},
            .waiting_for = {.is_some = false},
        };
        wasmos_framework_driver_report_progress(&progress);
    }
    framework_list_string_free(args);
    return ok;
}

static void decline(str_t *offer_id) {
    framework_list_string_t ids = {offer_id, 1};
    wasmos_framework_driver_filters_t filters = {.refuse_seconds = REFUSE_SECONDS};
    wasmos_framework_driver_decline(&ids, &filters);
}

/* Task ids are "square-N": the id says which number a status is about. */
static bool number_of(const str_t *id, uint64_t *n) {
    static const char prefix[] = "square-";
    size_t plen = sizeof prefix - 1;
    return id->len > plen && memcmp(id->ptr, prefix, plen) == 0 &&
           parse_u64(id->ptr + plen, id->len - plen, n) && *n >= 1 && *n <= S.n;
}

static void launch_on(exports_wasmos_framework_scheduler_offer_t *offer) {
    uint64_t fit_cpu = offer->resources.millicpus / TASK_MILLICPUS;
    uint64_t fit_mem = offer->resources.mem_mb / TASK_MEM_MB;
    uint64_t fit = fit_cpu < fit_mem ? fit_cpu : fit_mem;
    if (fit > S.queued_count) {
        fit = S.queued_count;
    }
    if (fit == 0) {
        decline(&offer->id);
        return;
    }
    wasmos_framework_driver_list_task_info_t tasks = {
        calloc(fit, sizeof(wasmos_framework_driver_task_info_t)), fit};
    static uint64_t numbers[MAX_TASKS];
    if (tasks.ptr == NULL) {
        decline(&offer->id);
        return;
    }
    char buf[64];
    uint64_t k = 0;
    for (uint64_t i = 0; i < S.n && k < fit; i++) {
        if (!S.queued[i]) {
            continue;
        }
        uint64_t n = i + 1;
        S.queued[i] = false;
        S.queued_count--;
        S.launches[i]++;
        numbers[k] = n;
        wasmos_framework_driver_task_info_t *t = &tasks.ptr[k++];
        snprintf(buf, sizeof buf, "square-%llu", (unsigned long long)n);
        framework_string_dup(&t->task_id, buf);
        framework_string_dup(&t->name, buf);
        framework_string_dup_n(&t->agent_id, (const char *)offer->agent_id.ptr,
                               offer->agent_id.len);
        t->resources = (wasmos_framework_types_resources_t){TASK_MILLICPUS, TASK_MEM_MB, 0};
        t->kind.tag = WASMOS_FRAMEWORK_TYPES_TASK_KIND_WASM;
        /* Tasks on one agent share one executor instance. */
        framework_string_dup(&t->kind.val.wasm.executor_id, "{{name}}");
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)n);
        str_t payload;
        framework_string_dup(&payload, buf);
        t->kind.val.wasm.payload = (framework_list_u8_t){payload.ptr, payload.len};
        /* The framework's deadline and fuel budget, else the agent's defaults. */
        t->kind.val.wasm.timeout_seconds.is_some = false;
        t->kind.val.wasm.fuel.is_some = false;
    }
    framework_list_string_t offer_ids = {&offer->id, 1};
    str_t err;
    if (!wasmos_framework_driver_launch(&offer_ids, &tasks, &err)) {
        char msg[512];
        snprintf(msg, sizeof msg, "{{name}}: launch failed, retrying on a later offer: %.*s",
                 (int)err.len, (const char *)err.ptr);
        str_t line = view(msg);
        wasmos_framework_driver_log(WASMOS_FRAMEWORK_TYPES_LOG_LEVEL_WARN, &line);
        framework_string_free(&err);
        for (uint64_t j = 0; j < k; j++) {
            S.queued[numbers[j] - 1] = true;
            S.launches[numbers[j] - 1]--;
            S.queued_count++;
        }
    }
    wasmos_framework_driver_list_task_info_free(&tasks);
}

void exports_wasmos_framework_scheduler_resource_offers(
    exports_wasmos_framework_scheduler_list_offer_t *offers) {
    for (size_t i = 0; i < offers->len; i++) {
        if (S.finished || S.queued_count == 0) {
            decline(&offers->ptr[i].id);
        } else {
            launch_on(&offers->ptr[i]);
        }
    }
    if (S.queued_count == 0) {
        /* Nothing left to launch: stop receiving offers. */
        wasmos_framework_driver_suppress();
    }
    exports_wasmos_framework_scheduler_list_offer_free(offers);
}

void exports_wasmos_framework_scheduler_status_update(
    exports_wasmos_framework_scheduler_task_status_t *status) {
    uint64_t n, square;
    wasmos_framework_types_task_state_t state = status->state;
    /* Updates are delivered at least once: count each number once. */
    if (!S.finished && number_of(&status->task_id, &n) && !S.done[n - 1]) {
        if (state == WASMOS_FRAMEWORK_TYPES_TASK_STATE_FINISHED) {
            if (!status->data.is_some ||
                !parse_u64(status->data.val.ptr, status->data.val.len, &square)) {
                finish(false, "{{name}}: task %llu returned no number", (unsigned long long)n);
            } else {
                S.done[n - 1] = true;
                S.done_count++;
                S.sum += square;
                if (S.done_count == S.n) {
                    finish(true, "{{name}}: sum of squares of 1..=%llu = %llu",
                           (unsigned long long)S.n, (unsigned long long)S.sum);
                }
            }
        } else if (state == WASMOS_FRAMEWORK_TYPES_TASK_STATE_FAILED ||
                   state == WASMOS_FRAMEWORK_TYPES_TASK_STATE_KILLED ||
                   state == WASMOS_FRAMEWORK_TYPES_TASK_STATE_LOST ||
                   state == WASMOS_FRAMEWORK_TYPES_TASK_STATE_ERROR) {
            if (S.launches[n - 1] >= MAX_LAUNCHES) {
                finish(false, "{{name}}: task %llu failed %d times: %.*s", (unsigned long long)n,
                       MAX_LAUNCHES, (int)status->message.len, (const char *)status->message.ptr);
            } else if (!S.queued[n - 1]) {
                /* Launch it again on a later offer. */
                S.queued[n - 1] = true;
                S.queued_count++;
                wasmos_framework_driver_revive();
            }
        }
    }
    exports_wasmos_framework_scheduler_task_status_free(status);
}

void exports_wasmos_framework_scheduler_offer_rescinded(str_t *offer_id) {
    /* Offers are answered at once, so a rescinded one was already launched on or declined. */
    framework_string_free(offer_id);
}

void exports_wasmos_framework_scheduler_timer(uint64_t timer_id) {
    (void)timer_id; /* No timers are set. */
}

void exports_wasmos_framework_scheduler_framework_message(str_t *agent_id, str_t *executor_id,
                                                          framework_list_u8_t *data) {
    /* The executor sends none. */
    framework_string_free(agent_id);
    framework_string_free(executor_id);
    framework_list_u8_free(data);
}

/* ---------------------------------------------------------------------------------------- */
/* Executor half: one instance per executor id on an agent; globals outlive a task. */

static uint64_t TASKS_RUN;

bool exports_wasmos_framework_executor_launch(exports_wasmos_framework_executor_task_t *task,
                                              framework_list_u8_t *ret, str_t *err) {
    bool ok = false;
    uint64_t n;
    const framework_list_u8_t *p = &task->payload;
    char buf[160];
    if (!parse_u64(p->ptr, p->len, &n)) {
        snprintf(buf, sizeof buf, "payload \"%.*s\" is not a whole number",
                 (int)(p->len > 64 ? 64 : p->len), (const char *)p->ptr);
        framework_string_dup(err, buf);
    } else if (n > UINT32_MAX) {
        snprintf(buf, sizeof buf, "%llu squared overflows 64 bits", (unsigned long long)n);
        framework_string_dup(err, buf);
    } else {
        TASKS_RUN++;
        uint64_t square = n * n;
        /* On the agent, in the task's log (`wasmos logs TASK`). */
        snprintf(buf, sizeof buf, "%llu squared is %llu; task %llu of this instance",
                 (unsigned long long)n, (unsigned long long)square, (unsigned long long)TASKS_RUN);
        str_t line = view(buf);
        wasmos_framework_executor_driver_log(WASMOS_FRAMEWORK_TYPES_LOG_LEVEL_INFO, &line);
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)square);
        str_t out;
        framework_string_dup(&out, buf);
        *ret = (framework_list_u8_t){out.ptr, out.len};
        ok = true;
    }
    exports_wasmos_framework_executor_task_free(task);
    return ok;
}
