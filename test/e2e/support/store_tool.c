/*
 * store_tool.c - see store_tool.h.
 */
#include "store_tool.h"

#include <string.h>

#include "net/adapter.h"

Store *
store_tool_open(const char *program, const char *path, CassmailConfig **cfg)
{
    GError *error = NULL;
    Store *store = NULL;
    *cfg = config_load(path, &error);
    if (*cfg)
        store = adapter_store_open(*cfg, &error);
    if (!store) {
        fprintf(stderr, "%s: %s\n", program, error->message);
        g_error_free(error);
    }
    return store;
}

int
store_tool_run(const char *program, const StoreToolCheck *checks, const char *name)
{
    for (const StoreToolCheck *c = checks; c->name; c++) {
        if (strcmp(c->name, name) == 0) {
            int rc = c->run();
            if (rc == 0)
                printf("ok %s\n", name);
            return rc;
        }
    }
    fprintf(stderr, "%s: unknown check %s\n", program, name);
    return 2;
}
