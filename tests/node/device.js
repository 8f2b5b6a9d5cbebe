// A device on the Node.js SDKs, as the end-to-end tests run it against the local cloud:
// provision through DPS, then send one telemetry message to the hub DPS chose and take one
// cloud-to-device message, over HTTPS or MQTT over WebSockets (the argument: http | mqttws).
//
// Environment: EMULATOR_ADDRESS (where every Azure host name resolves, as a hosts file would
// make it: the HTTP transports have no gateway option), DPS_HOST, ID_SCOPE, REGISTRATION_ID,
// DEVICE_KEY, and NODE_EXTRA_CA_CERTS (the emulator's CA). Prints one JSON line per step, never
// a key; exit status 0 once done, 1 on the first error.
'use strict';

const dns = require('dns');

const address = process.env.EMULATOR_ADDRESS;
dns.lookup = function lookup(hostname, options, callback) {
  const done = typeof options === 'function' ? options : callback;
  const all = typeof options === 'object' && options !== null && options.all;
  process.nextTick(() => (all ? done(null, [{ address, family: 4 }]) : done(null, address, 4)));
};

const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
const { Client, Message } = require('azure-iot-device');

const mode = process.argv[2];
const transports = {
  http: {
    dps: () => new (require('azure-iot-provisioning-device-http').Http)(),
    hub: require('azure-iot-device-http').Http,
  },
  mqttws: {
    dps: () => new (require('azure-iot-provisioning-device-mqtt').MqttWs)(),
    hub: require('azure-iot-device-mqtt').MqttWs,
  },
};

function say(event, fields) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

function fail(step, err) {
  say('error', { step, message: String((err && err.message) || err), name: err && err.name });
  process.exit(1);
}

async function main() {
  if (!transports[mode]) fail('usage', 'expected http or mqttws');
  const registrationId = process.env.REGISTRATION_ID;
  const key = process.env.DEVICE_KEY;
  const security = new SymmetricKeySecurityClient(registrationId, key);
  const provisioning = ProvisioningDeviceClient.create(
    process.env.DPS_HOST, process.env.ID_SCOPE, transports[mode].dps(), security);
  provisioning.setProvisioningPayload({ transport: mode });
  let result;
  try {
    result = await provisioning.register();
  } catch (err) {
    fail('register', err);
  }
  say('registered', { hub: result.assignedHub, deviceId: result.deviceId, payload: result.payload });

  const connectionString =
    `HostName=${result.assignedHub};DeviceId=${result.deviceId};SharedAccessKey=${key}`;
  const client = Client.fromConnectionString(connectionString, transports[mode].hub);
  try {
    await client.open();
    const message = new Message(JSON.stringify({ transport: mode, temperature: 21.5 }));
    message.messageId = `${mode}-1`;
    message.properties.add('transport', mode);
    await client.sendEvent(message);
  } catch (err) {
    fail('telemetry', err);
  }
  say('sent', {});

  const received = new Promise((resolve) => client.on('message', resolve));
  client.on('error', (err) => fail('receive', err));
  const c2d = await received;
  const properties = {};
  for (let i = 0; i < c2d.properties.count(); i += 1) {
    const item = c2d.properties.getItem(i);
    properties[item.key] = item.value;
  }
  try {
    await client.complete(c2d);
  } catch (err) {
    fail('complete', err);
  }
  say('c2d', { body: c2d.data.toString(), messageId: c2d.messageId, properties });
  await client.close();
  say('done', {});
  process.exit(0);
}

setTimeout(() => fail('timeout', 'no answer within 60 s'), 60000).unref();
main().catch((err) => fail('unexpected', err));
