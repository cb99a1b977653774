"""The receipts ledger: proof of every consent decision."""
