// Amesa TypeScript SDK: Connect-ES clients for the five services over gRPC-Web (through Envoy),
// attaching the current access token to every call.
//
//   const amesa = createAmesaClients({ baseUrl: "http://127.0.0.1:8080", token: () => session.accessToken });
//   const { languages } = await amesa.content.listLanguages({});
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AuthService } from "../../../gen/ts/amesa/auth/v1/auth_service_pb.js";
import { ContentService } from "../../../gen/ts/amesa/content/v1/content_service_pb.js";
import { LotteryService } from "../../../gen/ts/amesa/lottery/v1/lottery_service_pb.js";
import { PaymentService } from "../../../gen/ts/amesa/payment/v1/payment_service_pb.js";
import { UserService } from "../../../gen/ts/amesa/user/v1/user_service_pb.js";

export interface AmesaClientOptions {
  /** Envoy's address, e.g. "https://api.amesa.io". */
  baseUrl: string;
  /** Returns the current access token, or undefined when signed out; called before every call. */
  token?: () => string | undefined;
}

export interface AmesaClients {
  auth: Client<typeof AuthService>;
  user: Client<typeof UserService>;
  lottery: Client<typeof LotteryService>;
  payment: Client<typeof PaymentService>;
  content: Client<typeof ContentService>;
}

function bearer(token: () => string | undefined): Interceptor {
  return (next) => async (request) => {
    const value = token();
    if (value) {
      request.header.set("authorization", `Bearer ${value}`);
    }
    return next(request);
  };
}

export function createAmesaClients(options: AmesaClientOptions): AmesaClients {
  const transport = createGrpcWebTransport({
    baseUrl: options.baseUrl,
    interceptors: options.token ? [bearer(options.token)] : [],
  });
  return {
    auth: createClient(AuthService, transport),
    user: createClient(UserService, transport),
    lottery: createClient(LotteryService, transport),
    payment: createClient(PaymentService, transport),
    content: createClient(ContentService, transport),
  };
}
