"""Centralino vpn-ca: A certificate authority per tenant, device certificates, CRLs, OpenVPN server and client profiles, phone-model provisioning bundles."""
