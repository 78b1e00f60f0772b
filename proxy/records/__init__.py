"""What a person does with recordings (export, and in time search, holds, access),
as use cases above the storage layer and below the command line and HTTP API."""
