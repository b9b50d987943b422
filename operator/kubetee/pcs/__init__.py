"""The simulated Intel PCS (``kubetee pcs``): the cluster's one holder of the SGX CA and
TCB-signing keys. It certifies the platforms nodes register (PCK certificates), records
which platform is whose, and serves collateral over the PCCS/PCS v4 HTTP API."""
