/* The load budget of an embedding host: sy_server_set_load_timeout bounds the app file's main
 * chunk (not app.lua.max_time), refuses values out of range, and wins over
 * SWITCHYARD_LOAD_TIMEOUT. */
#include "switchyard.h"
#include "test.h"

#include <ev.h>

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

int main(void)
{
    char dir[] = "/tmp/sy_test_load_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char loop_app[128], ok_app[128];
    snprintf(loop_app, sizeof loop_app, "%s/loop.lua", dir);
    snprintf(ok_app, sizeof ok_app, "%s/ok.lua", dir);
    write_file(loop_app, "while true do end\n");
    write_file(ok_app, "return { lua = { max_time = 0.05 } }\n");

    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    sy_server *s = sy_server_new(loop);
    CHECK(sy_server_set_load_timeout(s, -1) == SY_EINVAL);
    CHECK(sy_server_set_load_timeout(s, 0.0 / 0.0) == SY_EINVAL);
    CHECK(sy_server_set_load_timeout(s, 1e9) == SY_EINVAL);
    /* The setter wins over a bad variable, which is then not read at all. */
    setenv("SWITCHYARD_LOAD_TIMEOUT", "not a number", 1);
    CHECK(sy_server_set_load_timeout(s, 0.2) == 0);
    CHECK(sy_server_load_app(s, loop_app) == SY_ELUA);
    CHECK_MSG(strstr(sy_server_error(s), "time budget for loading (0.2 s") != NULL, "%s",
              sy_server_error(s));
    CHECK(sy_server_load_app(s, ok_app) == 0);
    sy_server_free(s);

    /* Without the setter, the variable is read at the load. */
    s = sy_server_new(loop);
    CHECK(sy_server_load_app(s, ok_app) == SY_EINVAL);
    CHECK_MSG(strstr(sy_server_error(s), "SWITCHYARD_LOAD_TIMEOUT") != NULL, "%s",
              sy_server_error(s));
    setenv("SWITCHYARD_LOAD_TIMEOUT", "0.2", 1);
    CHECK(sy_server_load_app(s, loop_app) == SY_ELUA);
    CHECK_MSG(strstr(sy_server_error(s), "(0.2 s; SWITCHYARD_LOAD_TIMEOUT") != NULL, "%s",
              sy_server_error(s));
    unsetenv("SWITCHYARD_LOAD_TIMEOUT");
    sy_server_free(s);
    ev_loop_destroy(loop);
    unlink(loop_app);
    unlink(ok_app);
    rmdir(dir);
    return t_summary("test_load");
}
