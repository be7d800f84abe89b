/*
 * govedge share guard: a Mosquitto 2.0 plugin (API version 5) that refuses a
 * SUBSCRIBE to a shared subscription ($share/...) from every identity but the fleet
 * server's.
 *
 * Why: Mosquitto 2.0.11 never checks subscriptions against the acl_file (every
 * SUBSCRIBE is granted there); it checks the ACL only when delivering. An outlet that
 * joins the workers' share group is therefore handed its turn of the uplink, the ACL
 * refuses the delivery, and that message is lost to the workers. The dynamic-security
 * plugin could refuse it only for identities it lists (unknown usernames are deferred),
 * i.e. one plugin client per outlet. This check needs no state: docs/security.md,
 * "Shared subscriptions".
 *
 * Options (mosquitto.conf, after the `plugin` line):
 *   plugin_opt_share_user NAME   the one username (certificate CN) allowed to join a
 *                                share group; without it nobody may.
 *
 * Every other check is deferred, so the ACL file and other plugins decide as before.
 */
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define SHARE_PREFIX "$share"
#define SHARE_USER_OPTION "share_user"

static mosquitto_plugin_id_t *plugin_id = NULL;
static char *share_user = NULL;

/* Mosquitto takes a filter whose first level is "$share" as shared; any "$share..."
 * prefix is refused here, as no outlet topic starts with it. */
static int is_shared(const char *topic)
{
	return topic != NULL && strncmp(topic, SHARE_PREFIX, strlen(SHARE_PREFIX)) == 0;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *username;

	(void)event;
	(void)userdata;
	if(ed->access != MOSQ_ACL_SUBSCRIBE || !is_shared(ed->topic)){
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	username = mosquitto_client_username(ed->client);
	if(share_user != NULL && username != NULL && strcmp(username, share_user) == 0){
		return MOSQ_ERR_PLUGIN_DEFER; /* the ACL file decides, as for any subscription */
	}
	/* The client id, never a payload: outlet ids are not personal data. */
	mosquitto_log_printf(MOSQ_LOG_NOTICE,
			"govedge share guard: refused shared subscription from client %s",
			mosquitto_client_id(ed->client));
	return MOSQ_ERR_ACL_DENIED;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	int i;

	for(i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5){
			return 5;
		}
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *options, int option_count)
{
	int i;

	(void)userdata;
	plugin_id = identifier;
	for(i = 0; i < option_count; i++){
		if(strcmp(options[i].key, SHARE_USER_OPTION) == 0 && options[i].value != NULL){
			free(share_user);
			share_user = strdup(options[i].value);
			if(share_user == NULL){
				return MOSQ_ERR_NOMEM;
			}
		}
	}
	return mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	free(share_user);
	share_user = NULL;
	return mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
}
