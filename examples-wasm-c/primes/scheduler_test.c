/* Native checks of the primes scheduler (primes.c) through the generated glue
 * (bindings/framework.c), with the host's imports replaced by recording stubs: the paths a real
 * cluster rarely takes (failed, lost and malformed results, relaunch limits, refused launches,
 * duplicate updates). build.sh runs it under AddressSanitizer and UBSan when the native compiler
 * has them, so ownership mistakes in the glue's memory rules fail the build.
 *
 * Each scenario runs in a forked child, since the scheduler keeps its state in globals.
 * Prints "scheduler_test: N passed, M failed"; exits 1 if any check failed. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "framework.h"
#include "sieve.h"

static int failures;

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) {                                                          \
            failures++;                                                         \
            fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                       \
    } while (0)

/* ---- What the scheduler called, recorded by the import stubs. ---- */

#define MAX_LAUNCHED 64
static struct {
    char task_id[64];
    char executor_id[64];
    char payload[64];
    char agent_id[64];
} launched[MAX_LAUNCHED];
static int launched_count, launch_calls, declines, revives, suppresses, finishes;
static bool refuse_next_launch;
static bool finish_ok;
static char finish_text[512];

static void copy_str(char *dst, size_t cap, const uint8_t *src, size_t len) {
    if (len >= cap) {
        len = cap - 1;
    }
    memcpy(dst, src, len);
    dst[len] = 0;
}

void __wasm_import_wasmos_framework_driver_launch(uint8_t *ids, size_t nids, uint8_t *tasks,
                                                  size_t ntasks, uint8_t *ret) {
    (void)ids;
    CHECK(nids == 1);
    launch_calls++;
    if (refuse_next_launch) {
        refuse_next_launch = false;
        static const char msg[] = "offer o-1 is stale";
        char *err = malloc(sizeof msg);
        memcpy(err, msg, sizeof msg);
        ret[0] = 1;
        *(char **)(ret + sizeof(void *)) = err;
        *(size_t *)(ret + 2 * sizeof(void *)) = sizeof msg - 1;
        return;
    }
    wasmos_framework_driver_task_info_t *t = (wasmos_framework_driver_task_info_t *)tasks;
    for (size_t i = 0; i < ntasks && launched_count < MAX_LAUNCHED; i++, launched_count++) {
        CHECK(t[i].kind.tag == WASMOS_FRAMEWORK_TYPES_TASK_KIND_WASM);
        CHECK(t[i].resources.millicpus == 100 && t[i].resources.mem_mb == 32);
        copy_str(launched[launched_count].task_id, 64, t[i].task_id.ptr, t[i].task_id.len);
        copy_str(launched[launched_count].executor_id, 64, t[i].kind.val.wasm.executor_id.ptr,
                 t[i].kind.val.wasm.executor_id.len);
        copy_str(launched[launched_count].payload, 64, t[i].kind.val.wasm.payload.ptr,
                 t[i].kind.val.wasm.payload.len);
        copy_str(launched[launched_count].agent_id, 64, t[i].agent_id.ptr, t[i].agent_id.len);
    }
    ret[0] = 0;
}

void __wasm_import_wasmos_framework_driver_decline(uint8_t *ids, size_t n, double refuse) {
    (void)ids;
    CHECK(refuse > 0);
    declines += (int)n;
}

void __wasm_import_wasmos_framework_driver_kill(uint8_t *p, size_t n) {
    (void)p;
    (void)n;
    CHECK(!"kill is not called");
}

void __wasm_import_wasmos_framework_driver_revive(void) {
    revives++;
}

void __wasm_import_wasmos_framework_driver_suppress(void) {
    suppresses++;
}

void __wasm_import_wasmos_framework_driver_reconcile(uint8_t *p, size_t n) {
    (void)p;
    (void)n;
}

void __wasm_import_wasmos_framework_driver_state_get(uint8_t *k, size_t n, uint8_t *ret) {
    (void)k;
    (void)n;
    ret[0] = 0;
}

void __wasm_import_wasmos_framework_driver_state_put(uint8_t *k, size_t kn, uint8_t *v, size_t vn,
                                                     uint8_t *ret) {
    (void)k;
    (void)kn;
    (void)v;
    (void)vn;
    ret[0] = 0;
}

void __wasm_import_wasmos_framework_driver_finish(int32_t is_err, uint8_t *p, size_t n) {
    finishes++;
    finish_ok = is_err == 0;
    copy_str(finish_text, sizeof finish_text, p, n);
}

void __wasm_import_wasmos_framework_driver_log(int32_t level, uint8_t *p, size_t n) {
    (void)level;
    (void)p;
    (void)n;
}

void __wasm_import_wasmos_framework_driver_set_timer(int64_t id, int64_t ms, uint8_t *ret) {
    (void)id;
    (void)ms;
    ret[0] = 0; /* ok */
}

void __wasm_import_wasmos_framework_driver_report_progress(int32_t has_total, int64_t total,
                                                          int32_t has_waiting, int64_t millicpus,
                                                          int64_t mem_mb, int64_t disk_mb) {
    (void)has_total;
    (void)total;
    (void)has_waiting;
    (void)millicpus;
    (void)mem_mb;
    (void)disk_mb;
}

void __wasm_import_wasmos_framework_executor_driver_log(int32_t level, uint8_t *p, size_t n) {
    (void)level;
    (void)p;
    (void)n;
}

void __wasm_import_wasmos_framework_executor_driver_progress(uint8_t *p, size_t n) {
    (void)p;
    (void)n;
}

void __wasm_import_wasmos_framework_executor_driver_send_framework_message(uint8_t *p, size_t n) {
    (void)p;
    (void)n;
}

/* The glue references the component-type object, which only the Wasm link includes. */
void __component_type_object_force_link_framework(void) {}

/* ---- Calling the scheduler as the host would: arguments are malloc'd and handed over. ---- */

static framework_string_t owned(const char *s) {
    framework_string_t out;
    framework_string_dup(&out, s);
    return out;
}

static bool init(int argc, const char **argv, char *err_out, size_t cap) {
    framework_list_string_t args = {calloc(argc > 0 ? argc : 1, sizeof(framework_string_t)),
                                    (size_t)argc};
    for (int i = 0; i < argc; i++) {
        args.ptr[i] = owned(argv[i]);
    }
    framework_string_t err = {0};
    bool ok = exports_wasmos_framework_scheduler_init(&args, &err);
    if (!ok) {
        copy_str(err_out, cap, err.ptr, err.len);
        framework_string_free(&err);
    }
    if (argc == 0) {
        free(args.ptr);
    }
    return ok;
}

static void offer(uint64_t millicpus, uint64_t mem_mb) {
    exports_wasmos_framework_scheduler_list_offer_t offers = {
        calloc(1, sizeof(exports_wasmos_framework_scheduler_offer_t)), 1};
    offers.ptr[0].id = owned("o-1");
    offers.ptr[0].agent_id = owned("agent-1");
    offers.ptr[0].hostname = owned("host-1");
    offers.ptr[0].resources = (wasmos_framework_types_resources_t){millicpus, mem_mb, 1000};
    offers.ptr[0].attributes.len = 1;
    offers.ptr[0].attributes.ptr = calloc(1, sizeof(framework_tuple2_string_string_t));
    offers.ptr[0].attributes.ptr[0].f0 = owned("rack");
    offers.ptr[0].attributes.ptr[0].f1 = owned("r1");
    exports_wasmos_framework_scheduler_resource_offers(&offers);
}

static void status(const char *task_id, wasmos_framework_types_task_state_t state,
                   const char *data) {
    exports_wasmos_framework_scheduler_task_status_t st = {0};
    st.task_id = owned(task_id);
    st.agent_id.is_some = true;
    st.agent_id.val = owned("agent-1");
    st.state = state;
    st.message = owned(state == WASMOS_FRAMEWORK_TYPES_TASK_STATE_FINISHED ? "" : "it broke");
    if (data != NULL) {
        framework_string_t d = owned(data);
        st.data.is_some = true;
        st.data.val = (framework_list_u8_t){d.ptr, d.len};
    }
    exports_wasmos_framework_scheduler_status_update(&st);
}

/* The correct result of a launched task, computed as the executor would. */
static void result_of(int launched_index, char *out, size_t cap) {
    uint64_t range[2];
    const char *p = launched[launched_index].payload;
    CHECK(parse_u64_words((const uint8_t *)p, strlen(p), range, 2));
    static base_primes_t base;
    bool computed;
    CHECK(base_primes_ensure(&base, range[1], &computed));
    snprintf(out, cap, "%llu %llu %llu", (unsigned long long)count_primes_in(&base, range[0], range[1]),
             (unsigned long long)range[0], (unsigned long long)range[1]);
}

static void finish_task(int launched_index) {
    char data[96];
    result_of(launched_index, data, sizeof data);
    status(launched[launched_index].task_id, WASMOS_FRAMEWORK_TYPES_TASK_STATE_FINISHED, data);
}

/* ---- Scenarios. ---- */

static void bad_arguments(void) {
    char err[512];
    const char *a1[] = {"ten"};
    CHECK(!init(1, a1, err, sizeof err) && strstr(err, "bad LIMIT \"ten\"") != NULL);
    const char *a2[] = {"1000000000001"};
    CHECK(!init(1, a2, err, sizeof err) && strstr(err, "out of range 1..1000000000000") != NULL);
    const char *a3[] = {"10", "11"};
    CHECK(!init(2, a3, err, sizeof err) && strstr(err, "TASKS 11 is more than LIMIT 10") != NULL);
    const char *a4[] = {"10", "-1"};
    CHECK(!init(2, a4, err, sizeof err) && strstr(err, "bad TASKS \"-1\"") != NULL);
    const char *a5[] = {"1", "1", "1"};
    CHECK(!init(3, a5, err, sizeof err) && strstr(err, "too many arguments (3)") != NULL);
}

static void defaults(void) {
    char err[512];
    CHECK(init(0, NULL, err, sizeof err));
    offer(4000, 4096);
    CHECK(launched_count == 10 && suppresses == 1);
    CHECK(strcmp(launched[9].payload, "9000000 10000000") == 0);
    /* Four whole cores: four executor ids, round robin. */
    CHECK(strcmp(launched[0].executor_id, "primes-0") == 0);
    CHECK(strcmp(launched[3].executor_id, "primes-3") == 0);
    CHECK(strcmp(launched[4].executor_id, "primes-0") == 0);
}

static void happy_path_with_retries(void) {
    char err[512];
    const char *args[] = {"100000", "5"};
    CHECK(init(2, args, err, sizeof err));

    /* Too small for a task: declined. Then 0.3 CPU fits three of the five. */
    offer(50, 4096);
    CHECK(declines == 1 && launched_count == 0);
    offer(300, 4096);
    CHECK(launched_count == 3 && suppresses == 0);
    CHECK(strcmp(launched[0].task_id, "primes-0-1") == 0);
    CHECK(strcmp(launched[0].payload, "0 20000") == 0);
    CHECK(strcmp(launched[2].payload, "40000 60000") == 0);
    CHECK(strcmp(launched[0].agent_id, "agent-1") == 0);

    /* A refused launch launches nothing and reuses the same ids next time. */
    refuse_next_launch = true;
    offer(1000, 4096);
    CHECK(launch_calls == 2 && launched_count == 3);
    offer(1000, 4096);
    CHECK(launched_count == 5 && suppresses == 1);
    CHECK(strcmp(launched[3].task_id, "primes-3-1") == 0);
    CHECK(strcmp(launched[4].task_id, "primes-4-1") == 0);

    /* Nothing is pending: an offer now is declined. */
    offer(1000, 4096);
    CHECK(declines == 2);

    /* Task 0 fails: it is relaunched (offers revived) as primes-0-2. */
    status("primes-0-1", WASMOS_FRAMEWORK_TYPES_TASK_STATE_RUNNING, NULL);
    status("primes-0-1", WASMOS_FRAMEWORK_TYPES_TASK_STATE_FAILED, NULL);
    CHECK(revives == 1);
    /* A duplicate of the failure does not queue it twice. */
    status("primes-0-1", WASMOS_FRAMEWORK_TYPES_TASK_STATE_FAILED, NULL);
    /* Task 1 returns a result for the wrong range: relaunched too. */
    status("primes-1-1", WASMOS_FRAMEWORK_TYPES_TASK_STATE_FINISHED, "5 0 10");
    /* Task 2 returns garbage: relaunched. */
    status("primes-2-1", WASMOS_FRAMEWORK_TYPES_TASK_STATE_FINISHED, "lots");
    CHECK(revives == 1);
    offer(1000, 4096);
    CHECK(launched_count == 8 && suppresses == 2);
    CHECK(strcmp(launched[5].task_id, "primes-0-2") == 0);
    CHECK(strcmp(launched[6].task_id, "primes-1-2") == 0);
    CHECK(strcmp(launched[7].task_id, "primes-2-2") == 0);

    /* Unknown ids and unreachable tasks change nothing. */
    status("primes-99-1", WASMOS_FRAMEWORK_TYPES_TASK_STATE_FAILED, NULL);
    status("other", WASMOS_FRAMEWORK_TYPES_TASK_STATE_FAILED, NULL);
    status("primes-3-1", WASMOS_FRAMEWORK_TYPES_TASK_STATE_UNREACHABLE, NULL);
    CHECK(revives == 1);

    /* Results come in, each twice (updates are at least once): counted once. */
    int in_order[] = {3, 4, 6, 7};
    for (int i = 0; i < 4; i++) {
        finish_task(in_order[i]);
        finish_task(in_order[i]);
    }
    CHECK(finishes == 0);
    /* A late result of task 0's failed first attempt is as good as any: the range decides. */
    finish_task(0);
    CHECK(finishes == 1 && finish_ok);
    CHECK(strcmp(finish_text, "primes below 100000: 9592 (5 tasks)") == 0);
    finish_task(5);
    CHECK(finishes == 1);
    /* After finishing, everything is ignored. */
    status("primes-4-1", WASMOS_FRAMEWORK_TYPES_TASK_STATE_FAILED, NULL);
    offer(1000, 4096);
    CHECK(finishes == 1 && declines == 3);
}

static void gives_up_after_five_attempts(void) {
    char err[512];
    const char *args[] = {"1000", "1"};
    CHECK(init(2, args, err, sizeof err));
    for (int attempt = 1; attempt <= 5; attempt++) {
        offer(1000, 1024);
        CHECK(launched_count == attempt);
        char id[32];
        snprintf(id, sizeof id, "primes-0-%d", attempt);
        CHECK(strcmp(launched[attempt - 1].task_id, id) == 0);
        status(id, attempt % 2 ? WASMOS_FRAMEWORK_TYPES_TASK_STATE_LOST
                               : WASMOS_FRAMEWORK_TYPES_TASK_STATE_ERROR,
               NULL);
    }
    CHECK(finishes == 1 && !finish_ok);
    CHECK(strstr(finish_text, "task 0 failed 5 times, giving up; last error: lost: it broke") !=
          NULL);
}

static void executor_half(void) {
    exports_wasmos_framework_executor_task_t task = {owned("t-1"), owned("primes-0"), {0}};
    framework_string_t payload = owned("  10 100 ");
    task.payload = (framework_list_u8_t){payload.ptr, payload.len};
    framework_list_u8_t ret = {0};
    framework_string_t err = {0};
    CHECK(exports_wasmos_framework_executor_launch(&task, &ret, &err));
    CHECK(ret.len == 9 && memcmp(ret.ptr, "21 10 100", 9) == 0);
    framework_list_u8_free(&ret);

    exports_wasmos_framework_executor_task_t bad = {owned("t-2"), owned("primes-0"), {0}};
    payload = owned("100 10");
    bad.payload = (framework_list_u8_t){payload.ptr, payload.len};
    CHECK(!exports_wasmos_framework_executor_launch(&bad, &ret, &err));
    char text[256];
    copy_str(text, sizeof text, err.ptr, err.len);
    CHECK(strstr(text, "payload range [100, 10) is inverted") != NULL);
    framework_string_free(&err);
}

int main(void) {
    struct {
        const char *name;
        void (*run)(void);
    } scenarios[] = {
        {"bad_arguments", bad_arguments},
        {"defaults", defaults},
        {"happy_path_with_retries", happy_path_with_retries},
        {"gives_up_after_five_attempts", gives_up_after_five_attempts},
        {"executor_half", executor_half},
    };
    int n = (int)(sizeof scenarios / sizeof scenarios[0]);
    int passed = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid == 0) {
            scenarios[i].run();
            /* exit, not _exit: LeakSanitizer checks at exit. */
            exit(failures == 0 ? 0 : 1);
        }
        int wstatus = 0;
        waitpid(pid, &wstatus, 0);
        if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) {
            passed++;
        } else {
            failed++;
            fprintf(stderr, "scheduler_test: %s failed\n", scenarios[i].name);
        }
    }
    printf("scheduler_test: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
