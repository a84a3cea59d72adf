import type { ServiceSchema } from "moleculer";
import type { ServiceName } from "../lib/config";
import AuditService from "./audit.service";
import GatewayService from "./gateway.service";
import InventoryService from "./inventory.service";
import NotificationService from "./notification.service";
import OrderService from "./order.service";
import PaymentService from "./payment.service";
import ValidationService from "./validation.service";
import VoucherService from "./voucher.service";
import WalletService from "./wallet.service";

/** The services this code base provides, by the name SERVICES uses. */
export const SERVICE_SCHEMAS: Partial<Record<ServiceName, ServiceSchema<any, any, any, any>>> = {
	gateway: GatewayService,
	order: OrderService,
	validation: ValidationService,
	inventory: InventoryService,
	payment: PaymentService,
	voucher: VoucherService,
	notification: NotificationService,
	wallet: WalletService,
	audit: AuditService,
};
