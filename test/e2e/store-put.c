/*
 * store-put - put a message into a mailbox exactly as given, the way an older cassmail-smtpd (or an
 * import) may have stored it: no Received: field, no line-end checks. Run by
 * test/e2e/test_smuggling.py to give cassmail-pop3d stored octets (bare CR, bare LF) that today's
 * SMTP server refuses or normalises; not a product tool.
 *
 *   store-put CONFIG USER < MESSAGE
 *
 * Prints the message's TimeUUID and exits 0, or prints the error and exits 1.
 */
#include <stdio.h>

#include "store/store.h"
#include "support/store_tool.h"

int
main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: store-put CONFIG USER < MESSAGE\n");
        return 64;
    }
    g_autoptr(GByteArray) msg = g_byte_array_new();
    guint8 buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
        g_byte_array_append(msg, buf, (guint)n);
    CassmailConfig *cfg = NULL;
    Store *store = store_tool_open("store-put", argv[1], &cfg);
    StoreTarget target = {argv[2], "inbox"};
    StoreMsgId id;
    store_msgid_new(&id);
    GError *error = NULL;
    if (store && !store_deliver(store, &id, &target, 1, msg->data, msg->len, &error)) {
        fprintf(stderr, "store-put: %s\n", error->message);
        g_clear_error(&error);
        store_free(&store);
    }
    if (!store) {
        config_free(&cfg);
        return 1;
    }
    char text[STORE_MSGID_TEXT_LEN];
    store_msgid_to_text(&id, text);
    printf("%s\n", text);
    store_free(&store);
    config_free(&cfg);
    return 0;
}
